"""Fixtures of the security-policy tests: real DMU and TSM servers (uvicorn on loopback) in production mode."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from hack.testenv.asgi import serve_app

ADMIN_TOKEN = secrets.token_urlsafe(32)


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'service.sqlite3'}"


ServeFn = Callable[..., AbstractContextManager[str]]


@pytest.fixture
def serve_dmu(db_url: str, tmp_path: Path) -> ServeFn:
    """``with serve_dmu(**settings) as url``: a migrated DMU, production unless the settings say otherwise."""
    from dmu_service.api.main import create_app
    from dmu_service.config import Settings
    from dmu_service.migrations import upgrade

    @contextmanager
    def serve(**overrides) -> Iterator[str]:
        settings = Settings(
            **{"database_url": db_url, "data_dir": tmp_path / "dmu", "auth_token": ADMIN_TOKEN, "mixture_poll_interval_s": 0.1, **overrides}
        )
        upgrade(settings.sqlalchemy_url)
        with serve_app(create_app(settings), name="DMU") as url:
            yield url

    return serve


@pytest.fixture
def serve_tsm(db_url: str) -> ServeFn:
    """``with serve_tsm(**settings) as url``: a migrated TSM (detector loop off), production unless told otherwise."""
    from tsm_service.api.main import create_app
    from tsm_service.config import load_settings
    from tsm_service.migrations import upgrade

    @contextmanager
    def serve(**overrides) -> Iterator[str]:
        settings = load_settings(
            **{"database_url": db_url, "auth_token": ADMIN_TOKEN, "evaluate_interval_seconds": 0, "log_json": False, **overrides}
        )
        upgrade(db_url)
        with serve_app(create_app(settings), name="TSM") as url:
            yield url

    return serve


@pytest.fixture
def admin() -> dict[str, str]:
    """Headers carrying the admin token of the servers above."""
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
