"""Expectations bridge the gap between our own writes and the watch that reports them."""

from __future__ import annotations

from datetime import UTC, datetime

from heurimentor_operator.builders import build_pod
from heurimentor_operator.expectations import Expectations
from heurimentor_operator.planner import plan
from heurimentor_operator.spec import parse_job
from tests.operator.testlib_manifests import job


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_created_pods_count_as_existing_until_the_watch_shows_them():
    body = job(elastic={"replicas": 2})
    spec = parse_job(body)
    clock = Clock()
    expected = Expectations(ttl_s=30, clock=clock)
    first = plan(body, spec, expected.view([]), datetime.now(UTC))
    assert first.create == [("a100", 0), ("h800", 0)]
    for pool, index in first.create:
        expected.created(build_pod(spec, next(p for p in spec.pools if p.name == pool), index, attempt=0))
    # A pass before the watch delivered them: nothing is created again.
    body["status"] = first.status
    again = plan(body, spec, expected.view([]), datetime.now(UTC))
    assert again.create == []
    # The watch shows one; the other expectation stays until it shows or expires.
    seen = build_pod(spec, spec.pools[0], 0, attempt=0)
    seen["metadata"]["uid"] = "real-uid"
    view = expected.view([seen])
    assert sorted(p["metadata"]["uid"] for p in view) == ["expected:job-a-h800-0", "real-uid"]
    clock.now += 31
    assert [p["metadata"]["uid"] for p in expected.view([seen])] == ["real-uid"]


def test_deleted_pods_read_as_terminating_until_they_are_gone():
    spec = parse_job(job())
    clock = Clock()
    expected = Expectations(ttl_s=30, clock=clock)
    pod = build_pod(spec, spec.pools[0], 0, attempt=0)
    pod["metadata"]["uid"] = "u1"
    expected.deleted("u1")
    assert expected.view([pod])[0]["metadata"]["deletionTimestamp"]
    assert expected.view([]) == []
    assert "deletionTimestamp" not in expected.view([pod])[0]["metadata"]  # forgotten once it was gone
