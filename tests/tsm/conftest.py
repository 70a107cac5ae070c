"""TSM fixtures: a migrated TSM app on PostgreSQL (and SQLite, the embedded default)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.tsm.testlib import tsm_client


@pytest.fixture
def pg_tsm(postgres_url: str) -> Iterator[TestClient]:
    """A TSM app on a fresh, migrated PostgreSQL database."""
    with tsm_client(postgres_url) as client:
        yield client


@pytest.fixture(params=["postgresql", "sqlite"])
def any_tsm(request: pytest.FixtureRequest, tmp_path) -> Iterator[TestClient]:
    """The TSM on PostgreSQL (what production runs) and on SQLite (the embedded default)."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else f"sqlite:///{tmp_path / 'tsm.db'}"
    with tsm_client(url) as client:
        yield client
