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
    assert rollback_annotations(request) == {
        ANNOTATION_ROLLBACK: "120",
        ANNOTATION_ROLLBACK_SKIP: "120-180",
        ANNOTATION_ROLLBACK_ID: "tsm/9",
    }
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
    settings = load_settings(
        database_url=url, evaluate_interval_seconds=0, log_json=False, auth_token=TOKEN, detectors={"spike": {"rollback_margin_steps": 5}}
    )
    with serve_app(create_app(settings), name="TSM") as base:
        yield base


def test_client_reads_and_closes_recommendations_of_a_real_tsm(tsm_url):
    from heurimentor.contracts.metrics import MetricBatch

    client = TSMClient(tsm_url, token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}  # reads need it too: the TSM runs in production
    assert client.open_rollbacks("ns.unknown-job") == []  # the TSM has not heard of it: nothing to do
    points = [
        {"step": s, "rank": 0, "time": 1.7e9 + s, "tokens_seen": 10 * s, "scalars": {"loss": float("nan") if s == 20 else 2.0}}
        for s in range(25)
    ]
    batch = MetricBatch.model_validate({"batch_id": uuid.uuid4().hex, "points": points})
    assert (
        httpx.post(
            f"{tsm_url}/v1/jobs/ns.job-a/metrics",
            content=batch.model_dump_json(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
        ).status_code
        == 200
    )
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


def test_a_mixture_put_on_a_job_with_auto_rollback_restarts_nothing(kube, jobs, operator_kubeconfig, postgres_url, tmp_path):
    """A person PUTs a new version of the job's mixture on a real DMU; the workers move to it (more weight
    on the harder source: the blended loss x1.7, per-source losses unchanged) and report to a real TSM on
    PostgreSQL, which evaluates; the operator, polling that TSM for the job (spec.tsm.autoRollback),
    restarts nothing. A real spike afterwards is rolled back: the loop was live all along."""
    import math

    from heurimentor.contracts.metrics import MetricBatch
    from tests.dmu.testlib import add_sources, auth as dmu_auth, live_server, settings_for
    from tests.operator.testlib import TSM_TOKEN, running_operator, wait_for
    from tests.operator.testlib_manifests import job
    from tsm_service.api.main import create_app
    from tsm_service.config import load_settings
    from tsm_service.migrations import upgrade

    dmu_settings = settings_for(f"sqlite:///{tmp_path / 'dmu.db'}", tmp_path / "dmu")
    upgrade(postgres_url)
    tsm_settings = load_settings(
        database_url=postgres_url,
        evaluate_interval_seconds=0,
        log_json=False,
        auth_token=TSM_TOKEN,
        detectors={"spike": {"rollback_margin_steps": 10}},
    )
    token = {"Authorization": f"Bearer {TSM_TOKEN}"}  # reads are closed in production too
    with (
        live_server(dmu_settings) as dmu_url,
        httpx.Client(base_url=dmu_url) as dmu,
        serve_app(create_app(tsm_settings), name="TSM") as tsm_url,
        httpx.Client(base_url=tsm_url, headers=token) as tsm,
        running_operator(operator_kubeconfig),
    ):
        add_sources(dmu, "easy", "hard")
        created = dmu.post("/mixtures", headers=dmu_auth(), json={"name": "pretrain", "weights": {"easy": 0.8, "hard": 0.2}})
        assert created.status_code == 201, created.text
        body = job(name="mixed", tsm={"url": tsm_url, "autoRollback": True}, elastic={"replicas": 1})
        for pool in body["spec"]["pools"]:
            pool["resources"] = {"limits": {"nvidia.com/gpu": 1}}
        assert jobs.apply(body).returncode == 0
        wait_for("1 running", lambda: sum(p["status"].get("phase") == "Running" for p in jobs.pods("mixed")) == 1)
        job_id = f"{jobs.ns}.mixed"

        def report(steps, weights, version, spike=lambda s: 1.0):
            points = []
            for s in steps:
                easy, hard = 1.5 * (1 + math.exp(-s / 150)) * spike(s), 4.0 * (1 + math.exp(-s / 150)) * spike(s)
                points.append(
                    {
                        "step": s,
                        "rank": 0,
                        "time": 1.7e9 + s,
                        "tokens_seen": 1000 * s,
                        "mixture_version": version,
                        "scalars": {"loss": weights["easy"] * easy + weights["hard"] * hard, "grad_norm": 1.0},
                        "source_losses": {"easy": easy, "hard": hard},
                    }
                )
            batch = MetricBatch.model_validate({"batch_id": uuid.uuid4().hex, "points": points})
            assert (
                tsm.post(
                    f"/v1/jobs/{job_id}/metrics", content=batch.model_dump_json(), headers={"Content-Type": "application/json"}
                ).status_code
                == 200
            )
            evaluated = tsm.post(f"/v1/jobs/{job_id}/evaluate")
            assert evaluated.status_code == 200, evaluated.text
            return evaluated.json()

        report(range(0, 300), {"easy": 0.8, "hard": 0.2}, 1)
        put = dmu.put(
            "/mixtures/pretrain",
            headers=dmu_auth(),
            json={"weights": {"easy": 0.2, "hard": 0.8}, "author": "alice", "reason": "more of the hard source"},
        )
        assert put.status_code == 200 and put.json()["version"] == 2, put.text
        events = report(range(300, 400), put.json()["weights"], 2)
        assert "loss_spike" not in {e["kind"] for e in events} and tsm.get(f"/v1/jobs/{job_id}/rollbacks").json() == []
        time.sleep(3)  # six operator polls of the TSM
        assert jobs.status("mixed").get("attempt", 0) == 0
        assert {p["metadata"]["labels"]["heurimentor.io/attempt"] for p in jobs.pods("mixed")} == {"0"}
        assert "TSMRollback" not in {e["reason"] for e in jobs.events("mixed")}

        # A spike under the new mixture: recommended, and the operator acts on it.
        events = report(range(400, 420), put.json()["weights"], 2, spike=lambda s: 2.5 if 405 <= s < 410 else 1.0)
        assert [e["step"] for e in events if e["kind"] == "loss_spike"] == [405]
        wait_for("pod of attempt 1", lambda: [p for p in jobs.pods("mixed") if p["metadata"]["labels"]["heurimentor.io/attempt"] == "1"])
        assert jobs.status("mixed")["rollback"]["step"] == 395
