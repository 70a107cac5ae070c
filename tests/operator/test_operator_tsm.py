"""The operator's side of the TSM's rollback recommendations: which one to act on, the annotations it
writes, and its HTTP client against a real TSM (SQLite here; the cluster test runs it on PostgreSQL)."""

from __future__ import annotations

import secrets
import time
import uuid

import httpx
import pytest

from hack.testenv.asgi import serve_app
from hack.testenv.procs import free_port
from heurimentor_operator.constants import ANNOTATION_ROLLBACK, ANNOTATION_ROLLBACK_ID, ANNOTATION_ROLLBACK_SKIP
from heurimentor_operator.tsm import Recommendation, TSMClient, TSMError, plan_rollback, rollback_annotations


def rec(id_, resume, skip):
    return Recommendation(id=id_, resume_before_step=resume, skip_from_step=skip[0], skip_to_step=skip[1], reason="spike")


def test_one_rollback_answers_every_recommendation_whose_data_it_would_replay():
    # Two flagged steps close together (NaN loss at 40, inf grad norm at 41): one restart before
    # both, skipping both; the old trouble at step 12 lies before that restart and is superseded.
    old, at_40, at_41 = rec(1, 2, (2, 12)), rec(2, 30, (30, 40)), rec(3, 31, (31, 41))
    request, superseded = plan_rollback([at_41, old, at_40])
    assert (request.resume_before_step, request.skip_from_step, request.skip_to_step) == (30, 30, 41)
    assert {r.id for r in request.answers} == {2, 3} and superseded == [old]
    assert request.request_id == "tsm/2+3"
    assert plan_rollback([]) == (None, [])


def test_annotations_carry_step_range_and_who_asked():
    request, _ = plan_rollback([rec(9, 120, (120, 180))])
    assert rollback_annotations(request) == {ANNOTATION_ROLLBACK: "120", ANNOTATION_ROLLBACK_SKIP: "120-180", ANNOTATION_ROLLBACK_ID: "tsm/9"}
    # An empty range removes a skip range left from an earlier rollback instead of keeping it.
    request, _ = plan_rollback([rec(10, 0, (5, 4))])
    assert rollback_annotations(request)[ANNOTATION_ROLLBACK_SKIP] is None


TOKEN = secrets.token_urlsafe(32)  # production (the default) refuses a guessable one


@pytest.fixture
def tsm_url(tmp_path):
    """A real TSM that wants a bearer token for writes."""
    from tsm_service.api.main import create_app
    from tsm_service.config import load_settings
    from tsm_service.migrations import upgrade

    url = f"sqlite:///{tmp_path / 'tsm.db'}"
    upgrade(url)
    settings = load_settings(database_url=url, evaluate_interval_seconds=0, log_json=False, auth_token=TOKEN,
                             detectors={"spike": {"rollback_margin_steps": 5}})
    with serve_app(create_app(settings), name="TSM") as base:
        yield base


def test_client_reads_and_closes_recommendations_of_a_real_tsm(tsm_url):
    from heurimentor.contracts.metrics import MetricBatch

    client = TSMClient(tsm_url, token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}  # reads need it too: the TSM runs in production
    assert client.open_rollbacks("ns.unknown-job") == []  # the TSM has not heard of it: nothing to do
    points = [{"step": s, "rank": 0, "time": 1.7e9 + s, "tokens_seen": 10 * s,
               "scalars": {"loss": float("nan") if s == 20 else 2.0}} for s in range(25)]
    batch = MetricBatch.model_validate({"batch_id": uuid.uuid4().hex, "points": points})
    assert httpx.post(f"{tsm_url}/v1/jobs/ns.job-a/metrics", content=batch.model_dump_json(),
                      headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}).status_code == 200
    [open_one] = client.open_rollbacks("ns.job-a")
    with pytest.raises(TSMError, match="HTTP 401"):  # without the token: said, not taken for done
        TSMClient(tsm_url).close("ns.job-a", open_one, "acknowledged")
    client.set_suspended("ns.unknown-job", True)  # nothing to pause: fine
    client.set_suspended("ns.job-a", True)
    assert httpx.get(f"{tsm_url}/v1/jobs/ns.job-a", headers=auth).json()["suspended_at"] is not None
    assert (open_one.resume_before_step, open_one.skip_from_step, open_one.skip_to_step) == (15, 15, 20)
    client.close("ns.job-a", open_one, "acknowledged")
    client.close("ns.job-a", open_one, "acknowledged")  # again (a retry after a crash): fine
    client.close("ns.job-a", open_one, "dismissed")  # already closed the other way: left as it is (409)
    assert client.open_rollbacks("ns.job-a") == []
    statuses = [r["status"] for r in httpx.get(f"{tsm_url}/v1/jobs/ns.job-a/rollbacks", headers=auth).json()]
    assert statuses == ["acknowledged"]


def test_client_says_which_tsm_it_cannot_reach():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TSMError, match=url):
        TSMClient(url, timeout_s=2).open_rollbacks("ns.job-a")
