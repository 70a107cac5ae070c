"""The monitor over the API on PostgreSQL: findings become events once, rollbacks carry steps and tokens,
per-job thresholds apply, and the operator can act on a recommendation."""

from __future__ import annotations

import math
import time

from tests.tsm.testlib import point, send, tsm_client


def _feed(client, job, steps, *, loss, ranks=1, step_time=lambda step, rank: 1.0, layer_std=None):
    points = []
    for s in steps:
        for r in range(ranks):
            p = point(s, rank=r, step_time_seconds=step_time(s, r))
            if r == 0:
                p["scalars"].update(loss=loss(s), grad_norm=1.0)
                if layer_std is not None and s % 10 == 0:
                    p["layer_stats"] = [{"layer": f"layers.{i}", "weight_std": v} for i, v in enumerate(layer_std(s))]
            points.append(p)
    response = send(client, job, points)
    assert response.status_code == 200, response.text


def _evaluate(client, job="job-a"):
    response = client.post(f"/v1/jobs/{job}/evaluate")
    assert response.status_code == 200, response.text
    return response.json()


def test_spike_becomes_one_event_and_a_rollback_recommendation(pg_tsm):
    def loss(s):
        return 6.0 if 300 <= s < 306 else 2.0 + 0.5 * math.exp(-s / 200)

    def spikes(events):
        return [e for e in events if e["kind"] == "loss_spike"]

    _feed(pg_tsm, "job-a", range(0, 302), loss=loss)
    assert spikes(_evaluate(pg_tsm)) == []  # two spiking steps: not yet 3 consecutive
    _feed(pg_tsm, "job-a", range(302, 400), loss=loss)
    events = spikes(_evaluate(pg_tsm))
    assert [(e["kind"], e["step"]) for e in events] == [("loss_spike", 300)]
    assert events[0]["evidence"]["last_step"] == 305
    assert spikes(_evaluate(pg_tsm)) == []  # evaluating again finds nothing new
    [rollback] = pg_tsm.get("/v1/jobs/job-a/rollbacks").json()
    assert (rollback["resume_before_step"], rollback["skip_from_step"], rollback["skip_to_step"]) == (200, 200, 305)
    assert (rollback["skip_from_tokens"], rollback["skip_to_tokens"]) == (200_000, 305_000)
    assert rollback["event_id"] == events[0]["id"] and rollback["status"] == "open"

    acked = pg_tsm.patch(f"/v1/jobs/job-a/rollbacks/{rollback['id']}", json={"status": "acknowledged"})
    assert acked.status_code == 200 and acked.json()["status"] == "acknowledged"
    assert pg_tsm.get("/v1/jobs/job-a/rollbacks", params={"status": "open"}).json() == []
    conflict = pg_tsm.patch(f"/v1/jobs/job-a/rollbacks/{rollback['id']}", json={"status": "dismissed"})
    assert conflict.status_code == 409 and "already acknowledged" in conflict.json()["detail"]
    assert pg_tsm.patch("/v1/jobs/job-a/rollbacks/999", json={"status": "dismissed"}).status_code == 404
    assert pg_tsm.patch(f"/v1/jobs/job-a/rollbacks/{rollback['id']}", json={"status": "open"}).status_code == 422

    metrics = pg_tsm.get("/metrics").text
    assert 'heurimentor_tsm_loss_spikes_total{job_name="job-a"} 1.0' in metrics
    assert 'heurimentor_tsm_rollback_recommendations_total{job_name="job-a"} 1.0' in metrics


def test_per_job_thresholds_override_the_defaults(pg_tsm):
    def loss(s):
        return 2.4 if 300 <= s < 310 else 2.0  # 1.2x: a step counts at 1.25x under the default factor 1.5

    _feed(pg_tsm, "job-a", range(0, 400), loss=loss)
    _feed(pg_tsm, "job-b", range(0, 400), loss=loss)
    update = pg_tsm.patch("/v1/jobs/job-b/config", json={"detectors": {"spike": {"factor": 1.2, "window": 50, "consecutive": 3}}})
    assert update.status_code == 200 and update.json()["config"]["detectors"]["spike"]["factor"] == 1.2
    assert update.json()["config"]["detectors"]["plateau"]["window"] == 200  # untouched sections keep defaults
    assert sorted(e["kind"] for e in _evaluate(pg_tsm, "job-a")) == ["plateau", "stall"]
    assert sorted(e["kind"] for e in _evaluate(pg_tsm, "job-b")) == ["loss_spike", "plateau", "stall"]
    bad = pg_tsm.patch("/v1/jobs/job-b/config", json={"detectors": {"spike": {"factor": 0.5}}})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "factor"
    assert pg_tsm.get("/v1/jobs/job-b").json()["config"]["detectors"]["spike"]["factor"] == 1.2


def test_straggler_stall_and_weight_change_through_the_api(pg_tsm):
    def layer_std(s):
        jump = 0.05 if s >= 200 else 0.0
        return [0.02 + 1e-5 * s, 0.02 + 1e-5 * s + jump, 0.02 + 1e-5 * s]

    _feed(
        pg_tsm,
        "job-a",
        range(0, 300),
        loss=lambda s: 2.0 + 1.0 / (1 + s),
        ranks=4,
        step_time=lambda s, r: 3.0 if r == 2 else 1.0,
        layer_std=layer_std,
    )
    events = _evaluate(pg_tsm)
    kinds = {(e["kind"], e["subject"]): e for e in events}
    assert kinds[("straggler", "rank/2")]["evidence"]["ratio"] == 3.0
    assert kinds[("weight_change_anomaly", "weights")]["step"] == 200
    assert kinds[("weight_change_anomaly", "weights")]["evidence"]["top_layers"][0]["layer"] == "layers.1"
    assert ("stall", "step") in kinds  # crafted clock: the last step was long ago
    job = pg_tsm.get("/v1/jobs/job-a").json()
    assert job["step_time_seconds"] == 1.0 and job["step_time_skew_ratio"] == 3.0
    # A straggler is reported once per window, a stall once per stalled step.
    assert _evaluate(pg_tsm) == []
    metrics = pg_tsm.get("/metrics").text
    assert 'heurimentor_tsm_job_step_time_skew_ratio{job_name="job-a"} 3.0' in metrics
    assert 'heurimentor_tsm_events_total{job_name="job-a",kind="straggler"} 1.0' in metrics


def test_a_completed_run_is_not_a_stall_until_it_trains_on(pg_tsm):
    from heurimentor.contracts.metrics import MetricBatch

    for job in ("done", "quiet"):  # same crafted clock: both last stepped long ago
        _feed(pg_tsm, job, range(0, 50), loss=lambda s: 2.0)
    final = MetricBatch(batch_id="done-final", completed_step=49)
    assert (
        pg_tsm.post("/v1/jobs/done/metrics", content=final.model_dump_json(), headers={"Content-Type": "application/json"}).status_code
        == 200
    )
    assert pg_tsm.get("/v1/jobs/done").json()["completed_step"] == 49
    assert [e["kind"] for e in _evaluate(pg_tsm, "quiet")] == ["stall"]
    assert _evaluate(pg_tsm, "done") == []
    metrics = pg_tsm.get("/metrics").text
    assert 'heurimentor_tsm_job_completed{job_name="done"} 1.0' in metrics
    assert 'heurimentor_tsm_job_completed{job_name="quiet"} 0.0' in metrics
    # Resumed with more steps under the same name: training again, so its silence counts again.
    _feed(pg_tsm, "done", range(50, 60), loss=lambda s: 2.0)
    assert pg_tsm.get("/v1/jobs/done").json()["completed_step"] is None
    assert [e["kind"] for e in _evaluate(pg_tsm, "done")] == ["stall"]


def test_a_suspended_job_is_not_a_stall_until_it_reports_again(pg_tsm):
    for job in ("paused", "quiet"):  # same crafted clock: both last stepped long ago
        _feed(pg_tsm, job, range(0, 50), loss=lambda s: 2.0)
    assert pg_tsm.put("/v1/jobs/paused/suspension", json={"suspended": True}).status_code == 200
    first = pg_tsm.get("/v1/jobs/paused").json()["suspended_at"]
    again = pg_tsm.put("/v1/jobs/paused/suspension", json={"suspended": True}).json()  # the operator repeats it
    assert first is not None and again["suspended_at"] == first
    assert _evaluate(pg_tsm, "paused") == [] and [e["kind"] for e in _evaluate(pg_tsm, "quiet")] == ["stall"]
    assert 'heurimentor_tsm_job_suspended{job_name="paused"} 1.0' in pg_tsm.get("/metrics").text
    assert pg_tsm.put("/v1/jobs/nobody/suspension", json={"suspended": True}).status_code == 404
    assert pg_tsm.put("/v1/jobs/paused/suspension", json={"suspended": "maybe"}).status_code == 422
    # Resumed: its first report ends the suspension, and silence counts again.
    _feed(pg_tsm, "paused", range(50, 55), loss=lambda s: 2.0)
    assert pg_tsm.get("/v1/jobs/paused").json()["suspended_at"] is None
    assert [e["kind"] for e in _evaluate(pg_tsm, "paused")] == ["stall"]


def test_evaluate_unknown_job_is_404(pg_tsm):
    response = pg_tsm.post("/v1/jobs/nobody/evaluate")
    assert response.status_code == 404 and "has sent no metrics" in response.json()["detail"]


def test_config_before_the_first_metrics_and_the_background_loop(postgres_url):
    with tsm_client(postgres_url, evaluate_interval_seconds=0.2) as client:
        configured = client.patch("/v1/jobs/job-a/config", json={"detectors": {"stall": {"seconds": 5}}})
        assert configured.status_code == 200 and configured.json()["last_step"] is None
        now = time.time()
        send(client, "job-a", [point(s, time=now - 100 + s, loss=2.0) for s in range(10)])  # last step 91 s ago
        deadline = time.monotonic() + 20
        while not (events := client.get("/v1/jobs/job-a/events", params={"kind": "stall"}).json()):
            assert time.monotonic() < deadline, "the background loop did not evaluate the job"
            time.sleep(0.1)
        assert events[0]["step"] == 9 and events[0]["evidence"]["limit_seconds"] == 5
