"""The DMU fuzzed from its own OpenAPI on PostgreSQL: no 5xx, no undocumented status, no response
that breaks its schema (tests/fuzzing.py says how and how long)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import httpx
import pytest
import schemathesis

from tests.dmu.testlib import add_sources, auth, live_server, settings_for
from tests.fuzzing import Tally, assert_call_sequences_answer_as_documented, assert_every_operation_answers_as_documented

_databases = itertools.count()


@pytest.fixture(scope="module")
def dmu_fuzz_target(pg_server, request, tmp_path_factory) -> Iterator[tuple[str, Tally]]:
    """A live DMU on a fresh PostgreSQL database with two sources and a mixture, so paths naming them
    reach the database. Long-polls are capped at 0.2 s: a generated ``wait`` must not stall the run."""
    name = f"fuzz_dmu_{next(_databases)}"
    url = pg_server.create_database(name)
    tally = Tally("DMU")
    try:
        with live_server(settings_for(url, tmp_path_factory.mktemp("dmu-fuzz"), max_wait_s=0.2)) as base_url:
            with httpx.Client(base_url=base_url, timeout=30) as http:
                add_sources(http, "web-en", "books-zh")
                created = http.post("/mixtures", json={"name": "main", "weights": {"web-en": 3, "books-zh": 1}}, headers=auth())
                assert created.status_code == 201, created.text
            yield base_url, tally
    finally:
        tally.report(request.config)
        pg_server.drop_database(name)


@pytest.fixture(scope="module")
def dmu_schema(dmu_fuzz_target):
    base_url, _ = dmu_fuzz_target
    # The event stream never ends while its mixture exists: a fuzzer waiting for its body would hang.
    # Its validation and 404 are tested in test_dmu_bounds.py and its stream in test_dmu_mixtures.py.
    return schemathesis.openapi.from_url(f"{base_url}/openapi.json").exclude(path="/mixtures/{name}/events")


def test_dmu_answers_every_generated_request_as_documented(dmu_schema, dmu_fuzz_target):
    base_url, tally = dmu_fuzz_target
    assert_every_operation_answers_as_documented(dmu_schema, base_url=base_url, headers=auth(), tally=tally)


def test_dmu_call_sequences_along_inferred_links(dmu_schema, dmu_fuzz_target):
    base_url, tally = dmu_fuzz_target
    assert_call_sequences_answer_as_documented(dmu_schema, base_url=base_url, headers=auth(), tally=tally)
