"""DMU fixtures: a migrated DMU served by uvicorn on loopback, over PostgreSQL and SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.dmu.testlib import live_server, settings_for, train_tokenizer


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """PostgreSQL (what production runs) and SQLite (the embedded default)."""
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'dmu.sqlite3'}"


@pytest.fixture
def dmu_url(db_url: str, tmp_path: Path) -> Iterator[str]:
    with live_server(settings_for(db_url, tmp_path / "data")) as url:
        yield url


@pytest.fixture
def pg_dmu_url(postgres_url: str, tmp_path: Path) -> Iterator[str]:
    with live_server(settings_for(postgres_url, tmp_path / "data")) as url:
        yield url


@pytest.fixture
def http(dmu_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dmu_url, timeout=30) as client:
        yield client


@pytest.fixture
def pg_http(pg_dmu_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=pg_dmu_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def tokenizer_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tokenizer(tmp_path_factory.mktemp("tokenizer") / "tokenizer.json")
