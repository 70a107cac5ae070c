"""Specs that can never run wait Blocked (pure planner), and recorded decisions keep their Events."""

from __future__ import annotations

from datetime import UTC, datetime

from heurimentor_operator.builders import build_pod
from heurimentor_operator.conditions import get_condition, rfc3339
from heurimentor_operator.events import build_event, event_name, recorded_events
from heurimentor_operator.planner import batch_split_problem, block, plan
from heurimentor_operator.spec import parse_job
from tests.operator.testlib_manifests import job

T0 = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


def pod(body, pool, index, *, phase="Running", exit_code=None):
    spec = parse_job(body)
    p = build_pod(spec, next(x for x in spec.pools if x.name == pool), index, attempt=body.get("status", {}).get("attempt", 0))
    p["metadata"].update(uid=f"uid-{pool}-{index}-{phase}", creationTimestamp=rfc3339(T0))
    p["spec"]["nodeName"] = "node-x"
    p["status"] = {"phase": phase}
    if exit_code is not None:
        p["status"]["containerStatuses"] = [{"name": "trainer", "state": {"terminated": {"exitCode": exit_code}}}]
    return p


def running(body, *names):
    return [pod(body, n.split("-")[0], int(n.split("-")[1])) for n in names]


def step(body, pods):
    """Plan, then carry the planned status into the body, as the operator's status write does."""
    decided = plan(body, parse_job(body), pods, T0)
    body["status"] = decided.status
    return decided


def reasons(decided):
    return [e.reason for e in decided.events]


def blocked(body):
    return get_condition(body["status"]["conditions"], "Blocked") or {}


def test_a_batch_that_does_not_split_into_micro_batches_blocks_until_the_spec_changes():
    # Two pools split 96 sequences 32/64 over 8 ranks each: 4 and 8 per rank, not whole batches of 8.
    body = job(hyperparameters={"microBatchSize": 8})
    assert "pool a100" in batch_split_problem(parse_job(body))
    first = step(body, [])
    assert first.create == [] and body["status"]["phase"] == "Blocked"
    cond = blocked(body)
    assert (cond["status"], cond["reason"]) == ("True", "InvalidBatchSplit")
    assert "hyperparameters.microBatchSize 8" in cond["message"] and "32 of hyperparameters.globalBatchSize 96" in cond["message"]
    assert reasons(first).count("InvalidBatchSplit") == 1
    assert [e["key"] for e in recorded_events(body["status"])] == ["created", "blocked-1"]
    again = step(body, [])
    assert again.create == [] and "InvalidBatchSplit" not in reasons(again), "the Event goes out once"
    # A spec that splits (4 sequences per rank are one micro batch of 4) runs.
    body["spec"]["hyperparameters"]["microBatchSize"] = 4
    body["metadata"]["generation"] = 2
    fixed = step(body, [])
    assert fixed.create == [("a100", 0), ("h800", 0)]
    assert blocked(body)["status"] == "False" and body["status"]["phase"] == "Pending"


def test_micro_batch_of_one_always_splits():
    assert batch_split_problem(parse_job(job(elastic={"replicas": 3}))) is None


def test_invalid_pod_template_blocks_removes_the_workers_and_waits_for_a_new_generation():
    body = job()
    step(body, [])
    spec = parse_job(body)
    message = 'pod ns/job-a-h800-0: Pod "job-a-h800-0" is invalid: spec.containers[0].resources.limits[nvidia.com/gpu]: must be an integer'
    status, event = block(body["status"], spec, "InvalidPodTemplate", message, T0)
    assert event is not None and event.reason == "InvalidPodTemplate" and event.key == "blocked-1"
    assert status["phase"] == "Blocked" and blocked({"status": status})["message"] == message
    assert block(status, spec, "InvalidPodTemplate", message, T0)[1] is None, "blocked twice for the same reason: one Event"
    body["status"] = status
    # The pool that could be created is removed too: half a job never trains.
    waiting = step(body, running(body, "a100-0"))
    assert waiting.create == [] and [d[0] for d in waiting.delete] == ["job-a-a100-0"]
    assert body["status"]["phase"] == "Blocked" and body["status"]["replicas"] == 0
    assert step(body, []).create == [], "nothing is retried at the same generation"
    body["metadata"]["generation"] = 2
    retried = step(body, [])
    assert retried.create == [("a100", 0), ("h800", 0)] and blocked(body)["reason"] == "SpecChanged"


def test_a_gang_restart_records_its_event_with_the_exit_code():
    body = job()
    step(body, [])
    step(body, running(body, "a100-0", "h800-0"))
    failed = [pod(body, "a100", 0), pod(body, "h800", 0, phase="Failed", exit_code=137)]
    decided = step(body, failed)
    assert body["status"]["restarts"] == 1
    (restart,) = [e for e in recorded_events(body["status"]) if e["reason"] == "Restarting"]
    assert restart["key"] == "restart-1" and "exited 137" in restart["message"]
    assert [e.key for e in decided.events if e.reason == "Restarting"] == ["restart-1"]
    # A pass that decides nothing new keeps the record: a restarted operator still finds it.
    step(body, [])
    assert [e["key"] for e in recorded_events(body["status"])] == ["restart-1"]


def test_recorded_events_have_names_made_of_job_uid_and_key():
    body = job()
    manifest = build_event(body, key="restart-3", type_="Warning", reason="Restarting", message="x" * 5000, now=T0)
    assert manifest["metadata"]["name"] == event_name(body, "restart-3") == "job-a.01234567.restart-3"
    assert manifest["involvedObject"]["uid"] == body["metadata"]["uid"] and manifest["involvedObject"]["kind"] == "Aquila2TrainingJob"
    assert len(manifest["message"]) == 1024 and manifest["count"] == 1
