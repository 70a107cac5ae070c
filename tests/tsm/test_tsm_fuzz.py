"""The TSM fuzzed from its own OpenAPI on PostgreSQL: no 5xx, no undocumented status, no response
that breaks its schema (tests/fuzzing.py says how and how long)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import httpx
import pytest
import schemathesis

from tests.fuzzing import Tally, assert_call_sequences_answer_as_documented, assert_every_operation_answers_as_documented
from tests.tsm.testlib import auth, point, serve_app, tsm_settings
from tsm_service.api.main import create_app
from tsm_service.migrations import upgrade

_databases = itertools.count()


@pytest.fixture(scope="module")
def tsm_fuzz_target(pg_server, request) -> Iterator[tuple[str, Tally]]:
    """A live TSM on a fresh PostgreSQL database, with one job that has curves, so paths naming it reach the database."""
    name = f"fuzz_tsm_{next(_databases)}"
    url = pg_server.create_database(name)
    upgrade(url)
    tally = Tally("TSM")
    try:
        with serve_app(create_app(tsm_settings(url)), name="TSM") as base_url:
            batch = {"batch_id": "seed", "points": [point(s, loss=3.0 - s / 100, grad_norm=1.0) for s in range(1, 30)]}
            seeded = httpx.post(f"{base_url}/v1/jobs/fuzz-job/metrics", json=batch, headers=auth())
            assert seeded.status_code == 200, seeded.text
            yield base_url, tally
    finally:
        tally.report(request.config)
        pg_server.drop_database(name)


@pytest.fixture(scope="module")
def tsm_schema(tsm_fuzz_target):
    base_url, _ = tsm_fuzz_target
    return schemathesis.openapi.from_url(f"{base_url}/openapi.json")


def test_tsm_answers_every_generated_request_as_documented(tsm_schema, tsm_fuzz_target):
    base_url, tally = tsm_fuzz_target
    assert_every_operation_answers_as_documented(tsm_schema, base_url=base_url, headers=auth(), tally=tally)


def test_tsm_call_sequences_along_inferred_links(tsm_schema, tsm_fuzz_target):
    base_url, tally = tsm_fuzz_target
    assert_call_sequences_answer_as_documented(tsm_schema, base_url=base_url, headers=auth(), tally=tally)
