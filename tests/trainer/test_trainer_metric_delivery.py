"""The metric sender survives a poison batch: a refused batch (4xx) costs only its bad points, a
batch the TSM keeps failing on (5xx) is parked, and the steps behind either still arrive."""

from __future__ import annotations

import json
import time

import httpx
from fastapi import FastAPI, Request, Response

from heurimentor.contracts.metrics import StepPoint
from heurimentor_trainer import metrics as sender_module
from heurimentor_trainer.metrics import TSMSender
from tests.trainer.testlib import serve_app, tsm_app


def _point(step: int, *, metric: str = "loss") -> StepPoint:
    return StepPoint(step=step, rank=0, time=1_800_000_000.0 + step, tokens_seen=step * 100, scalars={metric: 10.0 - step / 10})


def _poison(step: int) -> StepPoint:
    """A point this trainer's own schema refuses (NUL in a metric name), as an older or foreign
    client could still send it: built without validation."""
    good = _point(step)
    return StepPoint.model_construct(**{**dict(good), "scalars": {"lo\x00ss": 1.0}})


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def _stored_steps(url: str, job: str) -> list[int]:
    response = httpx.get(f"{url}/v1/jobs/{job}/curves/scalar/loss")
    assert response.status_code == 200, response.text
    return [p["step"] for p in response.json()["points"]]


def test_a_refused_point_is_dropped_alone_and_the_later_steps_arrive(tmp_path, postgres_url, caplog):
    # The case: a NUL in a metric name on PostgreSQL was a 500, retried forever oldest-first,
    # and 0 of the 11 later steps arrived. Now the TSM refuses it (422) and the sender bisects the
    # batch down to that point, drops it with the reason, and delivers everything else.
    with serve_app(tsm_app(tmp_path, database_url=postgres_url)) as url:
        sender = TSMSender(url, "poison-job", 0, flush_interval=0.05, max_points=4)
        try:
            for step in range(1, 6):
                sender.add_point(_point(step))
            sender.add_point(_poison(6))
            for step in range(7, 18):
                sender.add_point(_point(step))
            _wait_for(lambda: sender.buffered_batches == 0 and sender.dropped_items == 1)
        finally:
            sender.close(timeout=1)
        assert _stored_steps(url, "poison-job") == [s for s in range(1, 18) if s != 6]
    assert sender.parked_batches == 0
    dropped = [r for r in caplog.records if r.getMessage() == "TSM rejected metrics; dropped"]
    assert len(dropped) == 1 and "NUL" in dropped[0].reason and dropped[0].steps == [6]


def _failing_tsm(poison_step: int, stored: list[int], answers: list[int]) -> FastAPI:
    """Stands in for a TSM with a bug that fails on one step (the real TSM answers 4xx for bad input,
    so a 500 cannot be provoked from it on purpose): 500 for a batch holding that step, else 200."""
    app = FastAPI()

    @app.post("/v1/jobs/{job}/metrics")
    async def ingest(job: str, request: Request) -> Response:
        batch = json.loads(await request.body())
        steps = [p["step"] for p in batch["points"]]
        if poison_step in steps:
            answers.append(500)
            return Response(status_code=500, content=b'{"detail":"internal error"}', media_type="application/json")
        stored.extend(steps)
        answers.append(200)
        return Response(
            content=json.dumps({"batch_id": batch["batch_id"], "accepted_points": len(steps), "accepted_evals": 0}).encode(),
            media_type="application/json",
        )

    return app


def test_a_batch_the_tsm_keeps_failing_on_is_parked_and_the_later_steps_arrive(tmp_path, monkeypatch):
    monkeypatch.setattr(sender_module, "PARKED_RETRY_S", (0.2, 0.4))  # retried within the test
    stored: list[int] = []
    answers: list[int] = []
    spool = tmp_path / "spool"
    with serve_app(_failing_tsm(5, stored, answers)) as url:
        sender = TSMSender(url, "failing-job", 0, flush_interval=0.02, max_points=8, spool_dir=str(spool))
        try:
            for step in range(1, 30):
                sender.add_point(_point(step))
            _wait_for(lambda: sorted(stored) == [s for s in range(1, 30) if s != 5])
            assert sender.parked_batches == 1
            retries_before = answers.count(500)
            _wait_for(lambda: answers.count(500) > retries_before)  # the parked point is tried again later
        finally:
            sender.close(timeout=0.5)
    assert sender.dropped_items == 0  # a 5xx may be the TSM's fault: nothing is thrown away
    spooled = [json.loads(p.read_text()) for p in (spool / "failing-job").glob("r0-*.json")]
    assert [p["step"] for batch in spooled for p in batch["points"]] == [5]
    # Bisection, not one request per point: 8 points cost 4 failed attempts plus 2 per halving.
    assert answers.count(500) < 4 + 2 * 3 + 10


def test_a_refused_url_is_not_bisected(tmp_path):
    # A 422 about the URL (an invalid job name) would refuse every half: the batch is dropped whole.
    with serve_app(tsm_app(tmp_path)) as url:
        sender = TSMSender(url, "Not_A_Job", 0, flush_interval=0.05, max_points=100)
        try:
            for step in range(1, 65):
                sender.add_point(_point(step))
            _wait_for(lambda: sender.dropped_items == 64)
        finally:
            sender.close(timeout=0.5)
    assert sender.delivered_batches == 0
