"""Settings precedence (defaults < file < env < CLI), `heurimentor tsm migrate`, readiness before/after."""

from __future__ import annotations

import secrets

import httpx
import pytest
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from pydantic import ValidationError
from typer.testing import CliRunner

from heurimentor.cli import app as cli
from heurimentor.contracts.metrics import MetricBatch
from heurimentor.service_kit.settings import InsecureSettings, SettingsError
from tests.tsm.testlib import TOKEN, point, serve_app, tsm_settings
from tsm_service.api.main import create_app
from tsm_service.config import load_settings
from tsm_service.migrations import alembic_config, upgrade


def test_precedence_defaults_file_env_flags(tmp_path, monkeypatch):
    config = tmp_path / "tsm.yaml"
    config.write_text("port: 9001\nlog_level: DEBUG\npolicy:\n  name: odm\n  guardrails:\n    weight_floor: 0.05\n")
    assert load_settings().port == 8081
    from_file = load_settings(config_file=config)
    assert (from_file.port, from_file.policy.name, from_file.policy.guardrails.weight_floor) == (9001, "odm", 0.05)
    monkeypatch.setenv("HEURIMENTOR_TSM_PORT", "9002")
    monkeypatch.setenv("HEURIMENTOR_TSM_POLICY__NAME", "learning_progress")
    from_env = load_settings(config_file=config)
    assert (from_env.port, from_env.policy.name, from_env.log_level) == (9002, "learning_progress", "DEBUG")
    assert load_settings(config_file=config, port=9003).port == 9003


def test_bad_settings_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(SettingsError, match="missing.yaml: cannot read"):
        load_settings(config_file=tmp_path / "missing.yaml")
    with pytest.raises(InsecureSettings, match="DMU_TOKEN is required in production"):
        load_settings(dmu_url="http://dmu", auth_token=secrets.token_urlsafe(32)).token_policy()
    monkeypatch.setenv("HEURIMENTOR_TSM_POLICY__NAME", "bogus")
    with pytest.raises(ValidationError, match="static', 'odm' or 'learning_progress"):
        load_settings()


def test_migrate_command_then_ready(postgres_url):
    app = create_app(tsm_settings(postgres_url))
    with TestClient(app) as client:
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503 and "run `heurimentor tsm migrate`" in not_ready.json()["detail"]
        assert client.get("/healthz").json() == {"status": "ok"}

        result = CliRunner().invoke(cli, ["tsm", "migrate", "--database-url", postgres_url])
        assert result.exit_code == 0, result.output
        assert "TSM schema at head" in result.output
        head = ScriptDirectory.from_config(alembic_config(postgres_url)).get_current_head()
        assert client.get("/readyz").json() == {"status": "ready", "schema_revision": head}
        assert "/v1/jobs/{job}/metrics" in client.get("/openapi.json").json()["paths"]


def test_events_and_rollbacks_commands(postgres_url):
    upgrade(postgres_url)
    with serve_app(create_app(tsm_settings(postgres_url, reads_require_auth=True))) as url:
        points = [point(s, loss=float("nan") if s == 5 else 2.0) for s in range(10)]
        body = MetricBatch.model_validate({"batch_id": "b", "points": points}).model_dump_json()
        assert (
            httpx.post(
                f"{url}/v1/jobs/job-a/metrics",
                content=body,
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
            ).status_code
            == 200
        )
        runner = CliRunner(env={"HEURIMENTOR_TSM_AUTH_TOKEN": TOKEN})
        refused = runner.invoke(cli, ["tsm", "events", "job-a", "--url", url], env={"HEURIMENTOR_TSM_AUTH_TOKEN": "wrong"})
        assert refused.exit_code == 1 and "HTTP 401" in refused.output
        listed = runner.invoke(cli, ["tsm", "events", "job-a", "--url", url], env={"COLUMNS": "200"})
        assert listed.exit_code == 0, listed.output
        assert "divergence" in listed.output and "scalar/loss" in listed.output
        recs = runner.invoke(cli, ["tsm", "rollbacks", "job-a", "--url", url], env={"COLUMNS": "200"})
        assert recs.exit_code == 0 and "0..5" in recs.output and "0..5000" in recs.output
        missing = runner.invoke(cli, ["tsm", "events", "nobody", "--url", url])
        assert missing.exit_code == 1 and "has sent no metrics" in missing.output


def test_migrations_match_the_models_and_downgrade(postgres_url):
    from alembic import command

    from tsm_service.migrations import alembic_config, downgrade

    upgrade(postgres_url)
    command.check(alembic_config(postgres_url))  # raises when the models drifted from the migrations
    downgrade(postgres_url, "base")
    upgrade(postgres_url)
