"""Settings, health, metrics, OpenAPI, sources and runs endpoints, migrations."""

from __future__ import annotations

import httpx
import pytest
from alembic import command
from sqlalchemy import create_engine, inspect

from dmu_service.config import load_settings
from dmu_service.migrations import alembic_config, upgrade
from heurimentor.service_kit.settings import InsecureSettings, SettingsError
from tests.dmu.testlib import add_sources, auth, live_server, settings_for


def test_settings_precedence_defaults_file_env_flags(tmp_path, monkeypatch) -> None:
    config = tmp_path / "dmu.yaml"
    config.write_text("port: 9001\nhost: 0.0.0.0\nlog_level: DEBUG\n")
    monkeypatch.delenv("HEURIMENTOR_DMU_PORT", raising=False)
    assert load_settings().port == 8700
    assert load_settings(config).port == 9001
    monkeypatch.setenv("HEURIMENTOR_DMU_PORT", "9002")
    settings = load_settings(config)
    assert (settings.port, settings.host, settings.log_level) == (9002, "0.0.0.0", "DEBUG")
    assert load_settings(config, port=9003, host=None).port == 9003
    assert load_settings(data_dir=tmp_path).sqlalchemy_url == f"sqlite:///{tmp_path / 'dmu.sqlite3'}"


def test_placeholder_token_refused_unless_development_is_said(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("HEURIMENTOR_DMU_ENVIRONMENT", raising=False)  # unset means production
    monkeypatch.delenv("HEURIMENTOR_DMU_AUTH_TOKEN", raising=False)
    with pytest.raises(InsecureSettings, match="production needs a write token"):
        load_settings().token_policy()
    monkeypatch.setenv("HEURIMENTOR_DMU_AUTH_TOKEN", "changeme")
    with pytest.raises(InsecureSettings, match="placeholder"):
        load_settings().token_policy()
    monkeypatch.setenv("HEURIMENTOR_DMU_ENVIRONMENT", "development")
    assert load_settings().token_policy().writes_need_token
    monkeypatch.setenv("HEURIMENTOR_DMU_ENVIRONMENT", "production")
    monkeypatch.setenv("HEURIMENTOR_DMU_AUTH_TOKEN", "9Mm2ZxqQ-vq1KpD4s7Wb0aYtRcE3nLfH")
    assert load_settings().token_policy().reads_need_token
    bad = tmp_path / "bad.yaml"
    bad.write_text("- not a mapping\n")
    with pytest.raises(SettingsError, match="bad.yaml"):
        load_settings(bad)


def test_migrations_create_the_schema_on_postgres(postgres_url: str) -> None:
    upgrade(postgres_url)
    upgrade(postgres_url)  # idempotent at head
    tables = set(inspect(create_engine(postgres_url)).get_table_names())
    assert {"sources", "runs", "mixtures", "mixture_versions", "alembic_version"} <= tables
    command.check(alembic_config(postgres_url))  # the ORM models and the migrations agree (raises on drift)


def test_health_readiness_metrics_docs(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").json() == {"status": "ready"}
    add_sources(http, "web-en")
    http.post("/mixtures", json={"name": "main", "weights": {"web-en": 2}}, headers=auth())
    http.put("/mixtures/main", json={"weights": {"web-en": -1}}, headers=auth())
    metrics = http.get("/metrics").text
    assert 'heurimentor_dmu_mixture_version{mixture="main"} 1.0' in metrics
    assert 'heurimentor_dmu_mixture_weight{mixture="main",source="web-en"} 1.0' in metrics
    assert 'heurimentor_dmu_http_requests_total{method="POST",route="/mixtures",status="201"} 1.0' in metrics
    add_sources(http, "books-zh")
    http.put("/mixtures/main", json={"weights": {"books-zh": 1}}, headers=auth())
    metrics = http.get("/metrics").text
    assert 'heurimentor_dmu_mixture_weight{mixture="main",source="books-zh"} 1.0' in metrics
    assert 'source="web-en"' not in metrics
    assert "/mixtures/{name}/current" in http.get("/openapi.json").json()["paths"]
    assert http.get("/docs").status_code == 200


def test_readiness_fails_before_migration(tmp_path) -> None:
    with live_server(settings_for(f"sqlite:///{tmp_path / 'empty.db'}", tmp_path), migrate=False) as url:
        response = httpx.get(f"{url}/readyz")
        assert response.status_code == 503 and "database not ready" in response.text


def test_sources_crud_and_validation(pg_http: httpx.Client) -> None:
    created = pg_http.post(
        "/sources",
        json={
            "name": "web-zh",
            "language": "zh",
            "domain": "web",
            "location": "/data/zh",
            "pipeline": {"normalize": {"traditional_to_simplified": True}},
        },
        headers=auth(),
    )
    assert created.status_code == 201, created.text
    assert pg_http.post("/sources", json={"name": "web-zh", "language": "zh"}, headers=auth()).status_code == 409
    bad_language = pg_http.post("/sources", json={"name": "x", "language": "fr"}, headers=auth())
    assert bad_language.status_code == 422
    bad_pipeline = pg_http.post("/sources", json={"name": "y", "language": "en", "pipeline": {"dedup": {"bands": 3}}}, headers=auth())
    assert bad_pipeline.status_code == 422 and "num_perm" in bad_pipeline.text
    unknown_stage = pg_http.post("/sources", json={"name": "z", "language": "en", "pipeline": {"nope": 1}}, headers=auth())
    assert unknown_stage.status_code == 422
    assert [s["name"] for s in pg_http.get("/sources").json()] == ["web-zh"]
    patched = pg_http.patch("/sources/web-zh", json={"domain": "news"}, headers=auth())
    assert patched.json()["domain"] == "news" and patched.json()["pipeline"]["normalize"]["traditional_to_simplified"]
    assert pg_http.get("/sources/nope").status_code == 404
    assert pg_http.get("/runs").json() == []
    assert pg_http.get("/runs/7").status_code == 404
