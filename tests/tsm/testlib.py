"""Helpers shared by the TSM tests (``from tests.tsm.testlib import ...``)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient

from hack.testenv.asgi import serve_app  # noqa: F401 (the TSM tests serve apps with it)
from heurimentor.contracts.metrics import MetricBatch
from tsm_service.api.main import create_app
from tsm_service.config import Settings, load_settings
from tsm_service.migrations import upgrade

TOKEN = secrets.token_urlsafe(32)  # the admin token of the test TSMs: random, as production requires


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def tsm_settings(database_url: str, **overrides) -> Settings:
    """Production settings (the default) with the admin token and reads opened, unless a test overrides them."""
    return load_settings(
        **{
            "database_url": database_url,
            "evaluate_interval_seconds": 0,
            "log_json": False,
            "auth_token": TOKEN,
            "reads_require_auth": False,
            **overrides,
        }
    )


@contextmanager
def tsm_client(database_url: str, mixture_client_factory=None, *, send_token: bool = True, **overrides) -> Iterator[TestClient]:
    """A TestClient on a migrated TSM; it sends the admin token with every request unless ``send_token=False``."""
    upgrade(database_url)
    app = create_app(tsm_settings(database_url, **overrides), mixture_client_factory=mixture_client_factory)
    with TestClient(app, headers=auth() if send_token else None) as client:
        yield client


def point(step: int, *, rank: int = 0, time: float | None = None, tokens: int | None = None, **scalars) -> dict:
    return {
        "step": step,
        "rank": rank,
        "time": 1_700_000_000.0 + step if time is None else time,
        "tokens_seen": step * 1000 if tokens is None else tokens,
        "scalars": scalars,
    }


def send(
    client: TestClient,
    job: str,
    points: list[dict],
    *,
    batch_id: str | None = None,
    evals: list[dict] | None = None,
    headers: dict[str, str] | None = None,
):
    batch = MetricBatch.model_validate({"batch_id": batch_id or uuid.uuid4().hex, "points": points, "evals": evals or []})
    return client.post(
        f"/v1/jobs/{job}/metrics", content=batch.model_dump_json(), headers={"Content-Type": "application/json", **(headers or {})}
    )
