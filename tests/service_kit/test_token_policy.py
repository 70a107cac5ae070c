"""The token policy both services enforce (issue 11, defects 2 and 9; docs/security.md)."""

from __future__ import annotations

import json
import secrets
import tempfile

import httpx
import pytest

from dmu_service.api.main import create_app as create_dmu
from dmu_service.config import Settings as DmuSettings
from heurimentor.service_kit.security import WeakSecret, check_secret
from heurimentor.service_kit.settings import InsecureSettings
from tsm_service.api.main import create_app as create_tsm
from tsm_service.config import Settings as TsmSettings

PLACEHOLDERS = [
    "demo-token",
    "CHANGEME",
    "changeme ",
    "x",
    "password",
    "",
    "s3cret-tsm-token",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "passwordpasswordpassword",
]


def _dmu(**settings) -> DmuSettings:
    return DmuSettings(database_url="sqlite://", data_dir=tempfile.mkdtemp(), **settings)


def _tsm(**settings) -> TsmSettings:
    return TsmSettings(database_url="sqlite://", evaluate_interval_seconds=0, **settings)


@pytest.mark.parametrize("token", PLACEHOLDERS)
@pytest.mark.parametrize(("settings", "create"), [(_dmu, create_dmu), (_tsm, create_tsm)], ids=["dmu", "tsm"])
def test_production_is_the_default_and_refuses_weak_tokens(settings, create, token) -> None:
    configured = settings(auth_token=token)
    assert configured.environment == "production"  # nothing said: production
    with pytest.raises(InsecureSettings, match="AUTH_TOKEN"):
        create(configured)
    weak_scoped = settings(auth_token=secrets.token_urlsafe(32), tokens=[{"name": "trainer", "secret": token, "scope": "write"}])
    with pytest.raises(InsecureSettings, match=r"tokens\[trainer\]"):
        create(weak_scoped)
    create(settings(auth_token=token, environment="development"))  # development opts out, explicitly


@pytest.mark.parametrize(("settings", "create"), [(_dmu, create_dmu), (_tsm, create_tsm)], ids=["dmu", "tsm"])
def test_production_without_a_write_token_does_not_start(settings, create) -> None:
    with pytest.raises(InsecureSettings, match="production needs a write token"):
        create(settings())
    with pytest.raises(InsecureSettings, match="production needs a write token"):
        create(settings(tokens=[{"name": "dashboards", "secret": secrets.token_urlsafe(32), "scope": "read"}]))


def test_tsm_refuses_a_weak_or_missing_dmu_token_in_production() -> None:
    with pytest.raises(InsecureSettings, match="DMU_TOKEN is required"):
        create_tsm(_tsm(auth_token=secrets.token_urlsafe(32), dmu_url="http://127.0.0.1:9"))
    with pytest.raises(InsecureSettings, match="DMU_TOKEN is a placeholder"):
        create_tsm(_tsm(auth_token=secrets.token_urlsafe(32), dmu_url="http://127.0.0.1:9", dmu_token="changeme"))


def test_one_placeholder_list_and_an_entropy_floor() -> None:
    for token in PLACEHOLDERS:
        with pytest.raises(WeakSecret):
            check_secret(token, what="t")
    for _ in range(50):  # what the docs tell people to generate always passes
        check_secret(secrets.token_urlsafe(32), what="t")
        check_secret(secrets.token_hex(16), what="t")


def test_reads_need_a_token_in_production_metrics_included(serve_dmu, serve_tsm, admin) -> None:
    with serve_dmu() as dmu, serve_tsm() as tsm:
        for url, path in [(dmu, "/mixtures"), (dmu, "/sources"), (dmu, "/runs"), (dmu, "/metrics"), (tsm, "/v1/jobs"), (tsm, "/metrics")]:
            refused = httpx.get(url + path)
            assert refused.status_code == 401, (url, path, refused.text)
            assert httpx.get(url + path, headers=admin).status_code == 200, (url, path)
        for url in (dmu, tsm):  # probes stay open
            assert httpx.get(url + "/healthz").status_code == 200
            assert httpx.get(url + "/readyz").status_code == 200
    with serve_dmu(reads_require_auth=False) as dmu:  # opened explicitly
        assert httpx.get(dmu + "/mixtures").status_code == 200
        assert httpx.post(dmu + "/sources", json={"name": "web-en", "language": "en"}).status_code == 401


def test_development_without_tokens_is_the_only_open_mode(serve_tsm) -> None:
    with serve_tsm(environment="development", auth_token=None) as tsm:
        assert httpx.put(tsm + "/v1/jobs/job-a/suspension", json={"suspended": False}).status_code == 404
        assert httpx.get(tsm + "/v1/jobs").status_code == 200


def test_scoped_tokens_on_the_tsm(serve_tsm, admin) -> None:
    trainer, operator, dashboards = (secrets.token_urlsafe(32) for _ in range(3))
    tokens = [
        {"name": "trainer-a", "secret": trainer, "scope": "write", "resources": ["team.job-a"]},
        {"name": "operator", "secret": operator, "scope": "write"},
        {"name": "dashboards", "secret": dashboards, "scope": "read"},
    ]
    batch = json.dumps(
        {
            "batch_id": "b1",
            "points": [
                {"step": s, "rank": 0, "time": 1.7e9 + s, "tokens_seen": s, "scalars": {"loss": float("nan") if s == 3 else 2.0}}
                for s in range(5)
            ],
        }
    )
    with serve_tsm(tokens=tokens) as tsm, httpx.Client(base_url=tsm) as http:

        def as_(token: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {token}"}

        assert http.post("/v1/jobs/team.job-a/metrics", content=batch, headers=as_(trainer)).status_code == 200
        other = http.post("/v1/jobs/team.job-b/metrics", content=batch, headers=as_(trainer))
        assert other.status_code == 403 and "trainer-a" in other.json()["detail"]
        assert http.post("/v1/jobs/team.job-b/metrics", content=batch, headers=as_(dashboards)).status_code == 403
        assert http.get("/v1/jobs/team.job-a/rollbacks", headers=as_(dashboards)).status_code == 200
        [rollback] = http.get("/v1/jobs/team.job-a/rollbacks", headers=as_(trainer)).json()
        ack = f"/v1/jobs/team.job-a/rollbacks/{rollback['id']}"
        assert http.patch(ack, json={"status": "acknowledged"}, headers=as_(dashboards)).status_code == 403
        assert http.patch(ack, json={"status": "acknowledged"}, headers=as_(operator)).status_code == 200
        # the trainer's token cannot aim a job's policy at a mixture of its choosing
        retarget = {"policy": {"name": "odm", "mixture": "prod-main"}}
        assert http.patch("/v1/jobs/team.job-b/config", json=retarget, headers=as_(trainer)).status_code == 403
        refused = http.patch("/v1/jobs/team.job-a/config", json=retarget, headers=as_(operator))
        assert refused.status_code == 403 and "policy_mixtures" in refused.json()["detail"]
        assert http.patch("/v1/jobs/team.job-a/config", json=retarget, headers=admin).status_code == 200
    with serve_tsm(tokens=tokens, policy_mixtures=["team-*"]) as tsm:
        allowed = {"policy": {"name": "odm", "mixture": "team-a"}}
        assert httpx.patch(f"{tsm}/v1/jobs/team.job-a/config", json=allowed, headers=as_(operator)).status_code == 200


def test_scoped_tokens_on_the_dmu(serve_dmu, admin) -> None:
    tsm_token, reader = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    tokens = [
        {"name": "tsm", "secret": tsm_token, "scope": "write", "resources": ["main"]},
        {"name": "trainer", "secret": reader, "scope": "read"},
    ]
    with serve_dmu(tokens=tokens) as dmu, httpx.Client(base_url=dmu) as http:
        tsm_headers, reader_headers = ({"Authorization": f"Bearer {t}"} for t in (tsm_token, reader))
        assert http.post("/sources", json={"name": "web-en", "language": "en"}, headers=tsm_headers).status_code == 403
        assert http.post("/sources", json={"name": "web-en", "language": "en"}, headers=admin).status_code == 201
        for name in ("main", "other"):
            assert http.post("/mixtures", json={"name": name, "weights": {"web-en": 1}}, headers=admin).status_code == 201
        assert http.put("/mixtures/main", json={"weights": {"web-en": 2}}, headers=tsm_headers).status_code == 200
        assert http.put("/mixtures/other", json={"weights": {"web-en": 2}}, headers=tsm_headers).status_code == 403
        assert http.post("/mixtures", json={"name": "third", "weights": {"web-en": 1}}, headers=tsm_headers).status_code == 403
        # a leaked trainer token reads and cannot rewrite anything
        assert http.get("/mixtures/main/current", headers=reader_headers).json()["version"] == 2
        assert http.patch("/mixtures/main", json={"weights": {"web-en": 5}}, headers=reader_headers).status_code == 403


@pytest.mark.parametrize("service", ["dmu", "tsm"])
def test_serve_exits_with_the_reason_on_a_placeholder_token(service, tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from heurimentor.cli import app as cli

    prefix = f"HEURIMENTOR_{service.upper()}_"
    env = {prefix + "AUTH_TOKEN": "changeme ", prefix + "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    result = CliRunner().invoke(cli, [service, "serve"], env=env)
    assert result.exit_code == 2, result.output
    assert "placeholder" in result.output and "AUTH_TOKEN" in result.output


@pytest.mark.parametrize(("settings", "create"), [(_dmu, create_dmu), (_tsm, create_tsm)], ids=["dmu", "tsm"])
def test_every_route_but_the_probes_refuses_an_anonymous_caller(settings, create) -> None:
    """Walks the app's OpenAPI paths (and /metrics, left out of the DMU's), so a route added later is covered."""
    import re

    from fastapi.testclient import TestClient

    from heurimentor.service_kit.guard import OPEN_PATHS

    app = create(settings(auth_token=secrets.token_urlsafe(32)))
    routes = {(method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops} | {("GET", "/metrics")}
    checked = 0
    with TestClient(app) as client:
        for method, route in sorted(routes):
            if route in OPEN_PATHS:
                continue
            answer = client.request(method, re.sub(r"\{[^}]+\}", "1", route), content=b"{not json")
            assert answer.status_code == 401, (method, route, answer.status_code)
            checked += 1
    assert checked >= 8
