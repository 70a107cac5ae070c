"""The reconcile decision, pure: scaling, Pending shrink/grow, restarts, suspend, rollback, finish."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from heurimentor.contracts.progress import ANNOTATION_PROGRESS
from heurimentor_operator.builders import build_pod
from heurimentor_operator.conditions import get_condition, rfc3339
from heurimentor_operator.constants import ANNOTATION_ROLLBACK, ANNOTATION_ROLLBACK_ID, ANNOTATION_ROLLBACK_SKIP
from heurimentor_operator.planner import plan
from heurimentor_operator.spec import parse_job
from tests.operator.testlib_manifests import job

T0 = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


def pod(body, pool, index, *, attempt=0, phase="Running", node="node-x", created=T0, exit_code=None, progress=None):
    spec = parse_job(body)
    p = build_pod(spec, next(x for x in spec.pools if x.name == pool), index, attempt=attempt)
    p["metadata"]["uid"] = f"uid-{pool}-{index}-{attempt}-{phase}"
    p["metadata"]["creationTimestamp"] = rfc3339(created)
    if node:
        p["spec"]["nodeName"] = node
    if progress:
        p["metadata"]["annotations"][ANNOTATION_PROGRESS] = json.dumps(progress)
    p["status"] = {"phase": phase}
    if exit_code is not None:
        p["status"]["containerStatuses"] = [{"name": "trainer", "state": {"terminated": {"exitCode": exit_code}}}]
    return p


def step(body, pods, now=T0):
    """Plan, then carry the planned status into the body, as the operator's status write does."""
    decided = plan(body, parse_job(body), pods, now)
    body["status"] = decided.status
    return decided


def running(body, *names):
    return [pod(body, n.split("-")[0], int(n.split("-")[1])) for n in names]


def reasons(decided):
    return [e.reason for e in decided.events]


def test_new_job_creates_its_pods_and_is_idempotent():
    body = job(elastic={"replicas": 3})
    first = step(body, [])
    assert first.create == [("a100", 0), ("h800", 0), ("h800", 1)]
    assert "Created" in reasons(first) and "created" in first.counters
    assert get_condition(body["status"]["conditions"], "Created")["status"] == "True"
    # The same pods listed again (operator restarted after creating them): nothing more to do.
    again = step(body, running(body, "a100-0", "h800-0", "h800-1"))
    assert again.create == [] and again.delete == [] and "created" not in again.counters
    st = body["status"]
    assert (st["phase"], st["replicas"], st["worldSize"]) == ("Running", 3, 24)
    assert [p["batchShare"] for p in st["pools"]] == [19, 77]


def test_scale_up_and_down_moves_the_highest_indices():
    body = job(elastic={"replicas": 2})
    step(body, [])
    body["spec"]["elastic"]["replicas"] = 4
    up = step(body, running(body, "a100-0", "h800-0"))
    assert up.create == [("h800", 1), ("h800", 2)]
    assert get_condition(body["status"]["conditions"], "Scaling")["reason"] == "ScalingUp"
    body["spec"]["elastic"]["replicas"] = 2
    down = step(body, running(body, "a100-0", "h800-0", "h800-1", "h800-2"))
    assert sorted(name for name, _, _ in down.delete) == ["job-a-h800-1", "job-a-h800-2"]
    assert down.create == []


def test_replicas_are_clamped_to_min_and_max():
    body = job(elastic={"minReplicas": 2, "maxReplicas": 3, "replicas": 9})
    assert len(step(body, []).create) == 3


def test_pending_past_timeout_shrinks_keeps_a_probe_and_grows_back():
    body = job(elastic={"replicas": 4, "pendingTimeoutSeconds": 5})  # a100: 1, h800: 3
    step(body, [])
    pods = running(body, "a100-0", "h800-0") + [pod(body, "h800", i, phase="Pending", node=None) for i in (1, 2)]
    early = step(body, pods, T0 + timedelta(seconds=2))
    assert early.delete == [] and 2.9 <= early.requeue_after <= 3.2  # wakes when the timeout hits
    late = step(body, pods, T0 + timedelta(seconds=6))
    assert "InsufficientCapacity" in reasons(late)
    assert [name for name, _, _ in late.delete] == ["job-a-h800-2"]  # h800-1 stays Pending as the probe
    st = body["status"]
    assert st["targetReplicas"] == 2 and st["pools"][1]["capacity"] == 1
    assert get_condition(st["conditions"], "Scaling")["reason"] == "InsufficientCapacity"
    # The training config now splits the global batch over the 2 workers that run.
    assert late.pool_replicas == {"a100": 1, "h800": 1}
    # Capacity appears: the probe binds, the next probe is created, and so on back to 4.
    pods = running(body, "a100-0", "h800-0", "h800-1")
    grow = step(body, pods, T0 + timedelta(seconds=8))
    assert grow.create == [("h800", 2)] and body["status"]["pools"][1]["capacity"] == 2
    pods = running(body, "a100-0", "h800-0", "h800-1", "h800-2")
    full = step(body, pods, T0 + timedelta(seconds=9))
    assert "CapacityRecovered" in reasons(full) and "capacity" not in body["status"]["pools"][1]
    assert body["status"]["targetReplicas"] == 4


def test_shrink_never_goes_below_min_replicas():
    body = job(elastic={"minReplicas": 3, "replicas": 4, "pendingTimeoutSeconds": 5})
    step(body, [])
    pods = running(body, "a100-0", "h800-0") + [pod(body, "h800", i, phase="Pending", node=None) for i in (1, 2)]
    late = step(body, pods, T0 + timedelta(seconds=6))
    # Only one pod may go: three are needed, so one Pending pod stays wanted (plus the probe slot).
    assert body["status"]["targetReplicas"] == 3
    assert body["status"]["phase"] == "Pending"
    assert len(late.delete) <= 1


def test_gang_restart_counts_backs_off_and_recreates_everything():
    body = job(elastic={"replicas": 2}, runPolicy={"backoffLimit": 2, "restartBackoffSeconds": 4})
    step(body, [])
    pods = [pod(body, "a100", 0), pod(body, "h800", 0, phase="Failed", exit_code=137)]
    failed = step(body, pods, T0)
    st = body["status"]
    assert (st["restarts"], st["attempt"], st["phase"]) == (1, 1, "Restarting")
    assert sorted(n for n, _, _ in failed.delete) == ["job-a-a100-0", "job-a-h800-0"]
    assert failed.create == [] and "restarted" in failed.counters
    assert "exited 137" in next(e.message for e in failed.events if e.reason == "Restarting")
    # Old pods gone, backoff not over: wait. Then recreate with the new attempt.
    waiting = step(body, [], T0 + timedelta(seconds=2))
    assert waiting.create == [] and 1.9 <= waiting.requeue_after <= 2.1
    again = step(body, [], T0 + timedelta(seconds=5))
    assert again.create == [("a100", 0), ("h800", 0)] and again.attempt == 1
    # Second failure doubles the backoff; the third exceeds backoffLimit=2.
    second = step(body, [pod(body, "a100", 0, attempt=1, phase="Failed", exit_code=1)], T0 + timedelta(seconds=6))
    assert body["status"]["restarts"] == 2 and "in 8s" in next(e.message for e in second.events if e.reason == "Restarting")
    final = step(body, [pod(body, "a100", 0, attempt=2, phase="Failed", exit_code=1)], T0 + timedelta(seconds=20))
    st = body["status"]
    assert st["phase"] == "Failed" and "failed" in final.counters
    assert get_condition(st["conditions"], "Failed")["reason"] == "BackoffLimitExceeded"


def test_a_finished_job_counts_only_the_workers_cleanPodPolicy_leaves_running():
    for policy, left in (("Running", 0), ("None", 1)):
        body = job(elastic={"replicas": 2}, runPolicy={"backoffLimit": 0, "cleanPodPolicy": policy})
        step(body, running(body, "a100-0", "h800-0"))
        assert body["status"]["replicas"] == 2
        step(body, [pod(body, "a100", 0), pod(body, "h800", 0, phase="Failed", exit_code=1)])
        st = body["status"]
        assert st["phase"] == "Failed" and (st["replicas"], st["worldSize"]) == (left, left * 8), policy


def test_stale_failed_pod_is_not_counted_twice():
    """Operator died after recording a gang restart but before deleting: no second restart."""
    body = job(elastic={"replicas": 1})
    step(body, [])
    step(body, [pod(body, "a100", 0, phase="Failed", exit_code=1)])
    again = step(body, [pod(body, "a100", 0, phase="Failed", exit_code=1)], T0 + timedelta(seconds=1))
    assert body["status"]["restarts"] == 1 and [n for n, _, _ in again.delete] == ["job-a-a100-0"]


def test_elastic_restart_replaces_only_the_failed_pod():
    body = job(elastic={"replicas": 2}, runPolicy={"restartMode": "elastic", "restartBackoffSeconds": 0})
    step(body, [])
    failed_pod = pod(body, "h800", 0, phase="Failed", exit_code=1)
    first = step(body, [pod(body, "a100", 0), failed_pod])
    assert [n for n, _, _ in first.delete] == ["job-a-h800-0"] and body["status"]["attempt"] == 0
    # Listed again before the delete landed: counted once, deleted again, and its name awaited.
    second = step(body, [pod(body, "a100", 0), failed_pod], T0 + timedelta(seconds=1))
    assert body["status"]["restarts"] == 1 and second.create == []
    third = step(body, [pod(body, "a100", 0)], T0 + timedelta(seconds=2))
    assert third.create == [("h800", 0)]


def test_success_when_every_worker_exits_zero():
    body = job(elastic={"replicas": 2}, runPolicy={"ttlSecondsAfterFinished": 60})
    step(body, [])
    half = step(body, [pod(body, "a100", 0, phase="Succeeded"), pod(body, "h800", 0)])
    assert body["status"]["phase"] == "Running" and half.create == []
    done = step(body, [pod(body, "a100", 0, phase="Succeeded"), pod(body, "h800", 0, phase="Succeeded")])
    assert body["status"]["phase"] == "Succeeded" and "succeeded" in done.counters and not done.delete_job
    assert 59 <= done.requeue_after <= 60
    assert step(body, [], T0 + timedelta(seconds=61)).delete_job


def test_suspend_deletes_pods_and_resume_recreates_them():
    body = job(elastic={"replicas": 2})
    step(body, [])
    body["spec"]["runPolicy"]["suspend"] = True
    suspended = step(body, running(body, "a100-0", "h800-0"))
    assert len(suspended.delete) == 2 and body["status"]["phase"] == "Suspended"
    assert get_condition(body["status"]["conditions"], "Suspended")["status"] == "True"
    body["spec"]["runPolicy"]["suspend"] = False
    resumed = step(body, [])
    assert resumed.create == [("a100", 0), ("h800", 0)] and "Resumed" in reasons(resumed)
    assert get_condition(body["status"]["conditions"], "Suspended")["status"] == "False"


def test_rollback_annotation_restarts_all_workers_once_from_that_step():
    body = job(elastic={"replicas": 1})
    step(body, [])
    body["metadata"]["annotations"] = {ANNOTATION_ROLLBACK: "1200"}
    rolled = step(body, running(body, "a100-0"))
    assert rolled.attempt == 1 and rolled.rollback_step == 1200 and "Rollback" in reasons(rolled)
    assert [n for n, _, _ in rolled.delete] == ["job-a-a100-0"]
    assert body["status"]["restarts"] == 0  # a rollback is not a failure
    again = step(body, [])
    assert again.attempt == 1 and again.create == [("a100", 0)] and again.rollback_step == 1200
    body["metadata"]["annotations"] = {ANNOTATION_ROLLBACK: "soon"}
    bad = step(body, [])
    assert "InvalidRollback" in reasons(bad) and bad.attempt == 1
    # Refused once, not on every pass; pods recreated in attempt 1 still get the applied rollback.
    quiet = step(body, [])
    assert "InvalidRollback" not in reasons(quiet) and quiet.rollback_step == 1200
    assert "rolled_back" in rolled.counters and "rolled_back" not in quiet.counters


def test_a_new_request_id_asks_again_for_the_same_step():
    """The TSM may recommend the same rollback twice (a second spike after the first restart)."""
    body = job(elastic={"replicas": 1})
    step(body, [])
    body["metadata"]["annotations"] = {ANNOTATION_ROLLBACK: "300", ANNOTATION_ROLLBACK_SKIP: "300-340", ANNOTATION_ROLLBACK_ID: "tsm/1"}
    first = step(body, running(body, "a100-0"))
    assert first.attempt == 1 and body["status"]["rollback"]["requestId"] == "tsm/1"
    assert "requested by tsm/1" in first.events[-1].message
    assert step(body, []).attempt == 1  # the same request is applied once
    body["metadata"]["annotations"][ANNOTATION_ROLLBACK_ID] = "tsm/2"
    second = step(body, [pod(body, "a100", 0, attempt=1)])
    assert (second.attempt, second.rollback_step, second.rollback_skip) == (2, 300, (300, 340))
    assert [n for n, _, _ in second.delete] == ["job-a-a100-0"]


def test_rollback_with_a_data_range_to_skip():
    body = job(elastic={"replicas": 1})
    step(body, [])
    body["metadata"]["annotations"] = {ANNOTATION_ROLLBACK: "1200", ANNOTATION_ROLLBACK_SKIP: "1200-1450"}
    rolled = step(body, running(body, "a100-0"))
    assert (rolled.attempt, rolled.rollback_step, rolled.rollback_skip) == (1, 1200, (1200, 1450))
    assert body["status"]["rollback"]["skipSteps"] == [1200, 1450]
    assert step(body, []).rollback_skip == (1200, 1450)  # pods recreated in the same attempt get it too
    # A range that is not FROM-TO refuses the whole rollback (no restart with half of it).
    body["metadata"]["annotations"] = {ANNOTATION_ROLLBACK: "900", ANNOTATION_ROLLBACK_SKIP: "950-900"}
    bad = step(body, [])
    assert "InvalidRollback" in reasons(bad) and bad.attempt == 1 and "FROM-TO" in body["status"]["rollback"]["error"]
    # Correcting only the range is a new request.
    body["metadata"]["annotations"][ANNOTATION_ROLLBACK_SKIP] = "900-950"
    fixed = step(body, [])
    assert (fixed.attempt, fixed.rollback_step, fixed.rollback_skip) == (2, 900, (900, 950))


def test_template_change_restarts_with_the_new_template():
    body = job(elastic={"replicas": 1})
    step(body, [])
    pods = running(body, "a100-0")
    body["spec"]["image"] = "trainer:v2"
    changed = step(body, pods)
    assert changed.attempt == 1 and "SpecChanged" in reasons(changed) and len(changed.delete) == 1


def test_active_deadline_fails_the_job():
    body = job(elastic={"replicas": 1}, runPolicy={"activeDeadlineSeconds": 30})
    step(body, [])
    step(body, running(body, "a100-0"))
    assert body["status"]["startTime"] == rfc3339(T0)
    late = step(body, running(body, "a100-0"), T0 + timedelta(seconds=31))
    assert body["status"]["phase"] == "Failed" and len(late.delete) == 1
    assert get_condition(body["status"]["conditions"], "Failed")["reason"] == "DeadlineExceeded"


def test_progress_from_rank0_annotation_gives_step_loss_mixture_and_eta():
    body = job(elastic={"replicas": 1}, hyperparameters={"steps": 100})
    step(body, [])
    report = {"step": 10, "loss": 3.5, "mixtureVersion": 4, "checkpoint": {"step": 10, "path": "/ckpt/step-00000010"}}
    step(body, [pod(body, "a100", 0, progress=report)], T0)
    step(body, [pod(body, "a100", 0, progress={**report, "step": 30, "loss": 2.5})], T0 + timedelta(seconds=20))
    st = body["status"]
    assert (st["step"], st["loss"], st["mixtureVersion"], st["progress"]) == (30, 2.5, 4, "30.0%")
    assert st["lastCheckpoint"] == {"step": 10, "path": "/ckpt/step-00000010"}
    assert st["eta"] == rfc3339(T0 + timedelta(seconds=20 + 70))  # 1 step/s, 70 steps left
