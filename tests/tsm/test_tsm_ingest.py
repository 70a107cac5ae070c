"""Ingest: idempotent, bounded, validated; non-finite values become divergence events; curves read back."""

from __future__ import annotations

import json

import pytest

from tests.tsm.testlib import auth, point, send, tsm_client


def _loss_curve(client, job="job-a", **params):
    return client.get(f"/v1/jobs/{job}/curves/scalar/loss", params=params)


def test_batch_is_stored_once_even_when_retried(any_tsm):
    points = [point(s, rank=r, loss=3.0 - 0.01 * s, step_time_seconds=1.0) for s in range(10) for r in range(2)]
    first = send(any_tsm, "job-a", points, batch_id="retry-me")
    assert first.status_code == 200, first.text
    assert first.json() == {"batch_id": "retry-me", "accepted_points": 40, "accepted_evals": 0, "duplicate": False, "non_finite": 0}
    again = send(any_tsm, "job-a", points, batch_id="retry-me")
    assert again.json()["duplicate"] is True and again.json()["accepted_points"] == 40

    curve = _loss_curve(any_tsm).json()
    assert [p["count"] for p in curve["points"]] == [2] * 10  # two ranks per step, not four
    job = any_tsm.get("/v1/jobs/job-a").json()
    assert job["last_step"] == 9 and job["tokens_seen"] == 9000
    metrics = any_tsm.get("/metrics").text
    assert 'heurimentor_tsm_ingest_batches_total{result="duplicate"} 1.0' in metrics
    assert "heurimentor_tsm_ingest_points_total 40.0" in metrics


def test_negative_step_is_422_with_reason_and_stores_nothing(any_tsm):
    body = {"batch_id": "bad", "points": [point(1, loss=2.0), {**point(2, loss=2.0), "step": -1}]}
    response = any_tsm.post("/v1/jobs/job-a/metrics", json=body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail[0]["loc"][-1] == "step" and "greater than or equal to 0" in detail[0]["msg"]
    assert any_tsm.get("/v1/jobs/job-a").status_code == 404  # not even the job was created
    # The same batch_id is still free: a corrected retry is stored.
    assert send(any_tsm, "job-a", [point(1, loss=2.0)], batch_id="bad").json()["duplicate"] is False


def test_oversized_request_is_413(postgres_url):
    from tests.tsm.testlib import tsm_client

    with tsm_client(postgres_url, max_request_bytes=2000) as client:
        big = [point(s, loss=1.0) for s in range(100)]
        response = send(client, "job-a", big)
        assert response.status_code == 413 and "at most 2000 bytes" in response.json()["detail"]
        # Chunked upload without Content-Length is cut off too.
        body = json.dumps({"batch_id": "x", "points": big}).encode()
        response = client.post("/v1/jobs/job-a/metrics", content=iter([body[:1500], body[1500:]]))
        assert response.status_code == 413
        assert client.get("/v1/jobs/job-a").status_code == 404


def test_too_many_points_is_413(pg_tsm):
    body = {"batch_id": "huge", "points": [point(s) for s in range(10_001)]}
    response = pg_tsm.post("/v1/jobs/job-a/metrics", json=body)
    assert response.status_code == 413 and "at most 10000" in response.json()["detail"]


def test_bad_job_name_and_malformed_json_are_422(pg_tsm):
    assert send(pg_tsm, "Bad_Name!", [point(1, loss=1.0)]).status_code == 422
    response = pg_tsm.post("/v1/jobs/job-a/metrics", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and response.json()["detail"][0]["type"] == "json_invalid"


def test_non_finite_values_flag_divergence_and_are_not_stored(any_tsm):
    points = [point(s, loss=2.0, grad_norm=1.0) for s in range(20)]
    points[12]["scalars"]["loss"] = float("nan")
    points[13]["scalars"]["grad_norm"] = float("inf")
    result = send(any_tsm, "job-a", points).json()
    assert result["non_finite"] == 2 and result["accepted_points"] == 38

    loss_steps = [p["step"] for p in _loss_curve(any_tsm).json()["points"]]
    assert 12 not in loss_steps and len(loss_steps) == 19
    events = any_tsm.get("/v1/jobs/job-a/events", params={"kind": "divergence"}).json()
    assert {(e["step"], e["subject"]) for e in events} == {(12, "scalar/loss"), (13, "scalar/grad_norm")}
    nan_event = next(e for e in events if e["step"] == 12)
    assert nan_event["severity"] == "critical"
    assert nan_event["evidence"]["occurrences"] == [{"step": 12, "rank": 0, "value": "nan"}]
    rollbacks = any_tsm.get("/v1/jobs/job-a/rollbacks", params={"status": "open"}).json()
    assert len(rollbacks) == 2
    # Resume no later than 100 steps before (clamped at 0) and skip the data up to the bad step.
    assert {(r["resume_before_step"], r["skip_to_step"], r["skip_to_tokens"]) for r in rollbacks} == {(0, 12, 12000), (0, 13, 13000)}


def test_replayed_steps_overwrite_old_values(any_tsm):
    send(any_tsm, "job-a", [point(s, loss=5.0) for s in range(5)])
    send(any_tsm, "job-a", [point(s, loss=1.0) for s in range(3, 5)])  # after a rollback, steps 3-4 again
    values = {p["step"]: p["value"] for p in _loss_curve(any_tsm).json()["points"]}
    assert values == {0: 5.0, 1: 5.0, 2: 5.0, 3: 1.0, 4: 1.0}


def test_curves_downsample_filter_and_404(any_tsm):
    points = [point(s, rank=r, loss=float(s + r)) for s in range(100) for r in range(2)]
    points[0]["source_losses"] = {"web": 3.5}
    send(any_tsm, "job-a", points, evals=[{"step": 50, "kind": "val_loss", "name": "web", "value": 3.2, "time": 1.0}])
    curve = _loss_curve(any_tsm, max_points=10).json()
    assert curve["bucket_steps"] == 10 and len(curve["points"]) == 10
    assert curve["points"][0] == {"step": 0, "value": 5.0, "min": 0.0, "max": 10.0, "count": 20}
    one_rank = _loss_curve(any_tsm, rank=1, step_min=10, step_max=12).json()
    assert [(p["step"], p["value"]) for p in one_rank["points"]] == [(10, 11.0), (11, 12.0), (12, 13.0)]
    val = any_tsm.get("/v1/jobs/job-a/curves/val_loss/web").json()
    assert val["points"] == [{"step": 50, "value": 3.2, "min": 3.2, "max": 3.2, "count": 1}]
    series = {(s["kind"], s["name"]): s["last_value"] for s in any_tsm.get("/v1/jobs/job-a/series").json()}
    assert series == {("scalar", "loss"): 99.0, ("source_loss", "web"): 3.5, ("val_loss", "web"): 3.2}
    missing = any_tsm.get("/v1/jobs/job-a/curves/scalar/nope")
    assert missing.status_code == 404 and "no scalar series 'nope'" in missing.json()["detail"]
    assert _loss_curve(any_tsm, step_min=5, step_max=2).status_code == 422
    assert any_tsm.get("/v1/jobs/other/curves/scalar/loss").status_code == 404


def test_concurrent_retries_and_ranks_on_postgresql(postgres_url):
    """Eight clients at once on a real server: the same batch four times, and four ranks' own batches."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from heurimentor.contracts.metrics import MetricBatch
    from tests.tsm.testlib import serve_app, tsm_settings
    from tsm_service.api.main import create_app
    from tsm_service.migrations import upgrade

    upgrade(postgres_url)
    same = MetricBatch.model_validate({"batch_id": "same", "points": [point(s, rank=9, loss=1.0) for s in range(200)]})
    ranks = [
        MetricBatch.model_validate(
            {"batch_id": f"rank-{r}", "points": [point(s, rank=r, loss=2.0, step_time_seconds=1.0) for s in range(200)]}
        )
        for r in range(4)
    ]
    with serve_app(create_app(tsm_settings(postgres_url))) as url:

        def post(batch):
            return httpx.post(
                f"{url}/v1/jobs/job-a/metrics",
                content=batch.model_dump_json(),
                headers={"Content-Type": "application/json", **auth()},
                timeout=60,
            )

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(post, [same] * 4 + ranks))
        assert all(r.status_code == 200 for r in results), [r.text for r in results]
        assert sorted(r.json()["duplicate"] for r in results[:4]) == [False, True, True, True]
        assert all(not r.json()["duplicate"] for r in results[4:])
        curve = httpx.get(f"{url}/v1/jobs/job-a/curves/scalar/loss", params={"step_min": 10, "step_max": 10}).json()
        assert curve["points"][0]["count"] == 5  # rank 9 once + ranks 0-3


def test_writes_need_the_bearer_token(postgres_url):
    """With the operator acting on rollback recommendations, posting metrics can restart a job."""
    token = auth()
    with tsm_client(postgres_url, send_token=False) as tsm:
        points = [point(s, loss=float("nan") if s == 5 else 2.0) for s in range(8)]
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            refused = send(tsm, "job-a", points, batch_id="b1", headers=headers)
            assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
        assert tsm.get("/v1/jobs").json() == []  # nothing stored by the refused posts
        assert send(tsm, "job-a", points, batch_id="b1", headers=token).status_code == 200
        [rollback] = tsm.get("/v1/jobs/job-a/rollbacks").json()  # the test TSM opens reads (reads_require_auth: false)
        assert tsm.patch(f"/v1/jobs/job-a/rollbacks/{rollback['id']}", json={"status": "dismissed"}).status_code == 401
        assert tsm.patch("/v1/jobs/job-a/config", json={"policy": {"name": "static"}}).status_code == 401
        assert tsm.post("/v1/jobs/job-a/evaluate").status_code == 401
        assert tsm.put("/v1/jobs/job-a/suspension", json={"suspended": True}).status_code == 401
        assert tsm.get("/v1/jobs/job-a/rollbacks").json()[0]["status"] == "open"
        assert tsm.patch(f"/v1/jobs/job-a/rollbacks/{rollback['id']}", json={"status": "acknowledged"}, headers=token).status_code == 200
    with tsm_client(postgres_url, send_token=False, reads_require_auth=None) as tsm:  # production's default: reads closed
        assert tsm.get("/v1/jobs/job-a/rollbacks").status_code == 401
        assert tsm.get("/v1/jobs/job-a/rollbacks", headers=token).status_code == 200
        assert tsm.get("/metrics").status_code == 401 and tsm.get("/metrics", headers=token).status_code == 200
        assert tsm.get("/healthz").status_code == 200


def test_production_refuses_to_start_without_a_real_token():
    from heurimentor.service_kit.settings import InsecureSettings
    from tsm_service.api.main import create_app
    from tsm_service.config import load_settings

    with pytest.raises(InsecureSettings, match="production needs a write token"):
        create_app(load_settings(database_url="sqlite://"))
    with pytest.raises(InsecureSettings, match="placeholder"):
        create_app(load_settings(database_url="sqlite://", auth_token="changeme"))
