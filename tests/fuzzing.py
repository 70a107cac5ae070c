"""Schemathesis against a live service (uvicorn on loopback, PostgreSQL): what both services' fuzz
tests share — the checks, the time bound, the tally of cases and 5xx.

Each case is one real HTTP request generated from the service's own OpenAPI document, valid
(positive) or deliberately invalid (negative). A case fails when the service answers 5xx, a status
its OpenAPI does not list for the route, or a body or content type that does not match the listed
response. The stateful part chains calls along the links schemathesis infers from the schemas
(a created mixture's name into its GET/PUT/PATCH, a job's name into its curves...).

Bounded: ``HEURIMENTOR_FUZZ_EXAMPLES`` cases per operation and mode (default 10) and as many stateful
scenarios, derandomized so a run is reproducible; both services together take about two minutes.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import hypothesis
import hypothesis.errors
import pytest
from schemathesis import GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

log = logging.getLogger(__name__)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MAX_EXAMPLES = int(os.environ.get("HEURIMENTOR_FUZZ_EXAMPLES", "10"))


def fuzz_settings(max_examples: int = MAX_EXAMPLES, **extra: Any) -> hypothesis.settings:
    return hypothesis.settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        print_blob=False,
        **extra,
    )


@dataclass
class Tally:
    """Cases sent and statuses seen, per service: the figures the issue asks for."""

    service: str
    statuses: Counter = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)

    def record(self, case: Any, response: Any) -> None:
        self.statuses[response.status_code] += 1
        if response.status_code >= 500:
            self.server_errors.append(f"{case.method} {case.formatted_path} -> {response.status_code}")

    @property
    def cases(self) -> int:
        return sum(self.statuses.values())

    def report(self, config: pytest.Config) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        line = f"fuzz {self.service}: {self.cases} cases, {len(self.server_errors)} 5xx, statuses {dict(sorted(self.statuses.items()))}"
        if reporter is not None:
            reporter.write_line(line)


def send(case: Any, *, http: httpx.Client, base_url: str, headers: dict[str, str]) -> httpx.Response:
    """The case as one request over ``http`` (keep-alive). httpx, not schemathesis' own requests
    transport: in this venv ``urllib3`` is overlaid by urllib3-future, which that transport trips on."""
    kwargs = case.as_transport_kwargs(base_url=base_url, headers=headers)
    body: dict[str, Any] = {}
    if "json" in kwargs:
        body["json"] = kwargs["json"]
    elif isinstance(kwargs.get("data"), (bytes, str)):
        body["content"] = kwargs["data"]
    elif kwargs.get("data") is not None:
        body["data"] = kwargs["data"]
    try:
        return http.request(kwargs["method"], kwargs["url"], headers=kwargs.get("headers"), params=kwargs.get("params"), **body)
    except (UnicodeEncodeError, httpx.InvalidURL, httpx.LocalProtocolError):
        hypothesis.reject()  # no HTTP client can send it (a header outside latin-1...): not a server's answer


def call_and_check(case: Any, *, http: httpx.Client, base_url: str, headers: dict[str, str], tally: Tally) -> None:
    response = send(case, http=http, base_url=base_url, headers=headers)
    tally.record(case, response)
    case.validate_response(response, checks=CHECKS)


def fuzz_operations(schema: Any, *, base_url: str, headers: dict[str, str], tally: Tally, max_examples: int = MAX_EXAMPLES) -> list[str]:
    """Every operation of ``schema``, with valid and invalid input; returns the failures (one per
    operation and mode, after shrinking) so one bug does not hide the others."""
    failures = []
    http = httpx.Client(timeout=30)
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
            @fuzz_settings(max_examples)
            def run(case: Any) -> None:
                call_and_check(case, http=http, base_url=base_url, headers=headers, tally=tally)

            started, sent = time.monotonic(), tally.cases
            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                pass  # nothing to make invalid (a route without parameters or body has no negative case)
            except (Exception, BaseExceptionGroup) as e:  # noqa: BLE001 - a failed check: report it, go on
                failures.append(f"{operation.label} ({mode.value}): {type(e).__name__}: {str(e)[:1500]}")
            log.info("fuzzed %s (%s): %d cases in %.1f s", operation.label, mode.value, tally.cases - sent, time.monotonic() - started)
    http.close()
    return failures


def state_machine(schema: Any, *, base_url: str, headers: dict[str, str], tally: Tally) -> type:
    """The schema's stateful test, sending our headers and tallying every call."""

    http = httpx.Client(timeout=30)

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def call(self, case: Any, **kwargs: Any) -> Any:
            return Response.from_any(send(case, http=http, base_url=base_url, headers=headers))

        def after_call(self, response: Any, case: Any) -> None:
            super().after_call(response, case)
            tally.record(case, response)

        def validate_response(self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS)

    return Machine


def assert_every_operation_answers_as_documented(schema: Any, *, base_url: str, headers: dict[str, str], tally: Tally) -> None:
    failures = fuzz_operations(schema, base_url=base_url, headers=headers, tally=tally)
    assert tally.cases > 0
    assert not failures, "\n\n".join(failures)


def assert_call_sequences_answer_as_documented(schema: Any, *, base_url: str, headers: dict[str, str], tally: Tally) -> None:
    before = tally.cases
    state_machine(schema, base_url=base_url, headers=headers, tally=tally).run(settings=fuzz_settings(stateful_step_count=6))
    assert tally.cases > before  # the scenarios ran
