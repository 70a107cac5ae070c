"""Against the real control plane: pods the apiserver refuses block the job once (InvalidPodTemplate),
and the Events of a recorded decision survive an operator that died before posting them."""

from __future__ import annotations

import json

from heurimentor_operator import metrics
from tests.operator.testlib import running_operator, wait_for
from tests.operator.testlib_manifests import job


def small(name, **overrides):
    body = job(name=name, **overrides)
    for pool in body["spec"]["pools"]:
        pool["resources"] = {"limits": {"nvidia.com/gpu": 1}}
    return body


def passes() -> float:
    """Reconciles this process's operator has finished (its histogram's count)."""
    return next(s.value for m in metrics.RECONCILE_SECONDS.collect() for s in m.samples if s.name.endswith("_count"))


def by_reason(jobs, name, reason):
    return [e for e in jobs.events(name) if e["reason"] == reason]


def test_pods_the_apiserver_refuses_block_the_job_once_until_the_spec_changes(kube, jobs, operator_kubeconfig):
    body = small("badgpu")
    body["spec"]["pools"][1]["resources"] = {"limits": {"nvidia.com/gpu": "1500m"}}  # extended resources are whole
    with running_operator(operator_kubeconfig):
        assert jobs.apply(body).returncode == 0
        cond = wait_for("Blocked", lambda: (c := jobs.condition("badgpu", "Blocked")).get("status") == "True" and c)
        assert cond["reason"] == "InvalidPodTemplate" and cond["observedGeneration"] == 1
        assert "badgpu-h800-0" in cond["message"] and "must be an integer" in cond["message"], cond["message"]
        assert jobs.status("badgpu")["phase"] == "Blocked"
        # The a100 pod the apiserver took is removed: half a job never trains.
        wait_for("no workers", lambda: jobs.pods("badgpu") == [])
        seen = passes()
        wait_for("two more passes", lambda: passes() >= seen + 2, timeout=60)
        assert len(by_reason(jobs, "badgpu", "InvalidPodTemplate")) == 1, "the Event is posted once"
        assert by_reason(jobs, "badgpu", "FailedPodOperation") == [], "no retry, no repeated warning"
        assert jobs.pods("badgpu") == []
        # Fixed spec: a new generation, tried again, and it runs.
        kube.kubectl(
            "patch",
            "a2j",
            "badgpu",
            "-n",
            jobs.ns,
            "--type=json",
            "-p",
            json.dumps([{"op": "replace", "path": "/spec/pools/1/resources/limits/nvidia.com~1gpu", "value": 1}]),
        )
        wait_for("2 running", lambda: jobs.status("badgpu").get("replicas") == 2 and jobs.status("badgpu")["phase"] == "Running")
        assert jobs.condition("badgpu", "Blocked")["status"] == "False"


def test_a_restart_recorded_by_an_operator_that_died_before_its_event_is_announced_by_the_next(
    kube, jobs, operator_kubeconfig, monkeypatch
):
    from heurimentor_operator.k8s import Kube

    post = Kube.create_event

    def dies_before_posting(self, manifest):
        if manifest["reason"] == "Restarting":
            raise RuntimeError("operator killed between its status write and its Events (test)")
        return post(self, manifest)

    monkeypatch.setattr(Kube, "create_event", dies_before_posting)
    with running_operator(operator_kubeconfig):
        assert jobs.apply(small("crashy", runPolicy={"restartBackoffSeconds": 30})).returncode == 0
        wait_for("2 running", lambda: jobs.status("crashy").get("replicas") == 2)
        jobs.exit_pod("crashy-h800-0", 137)
        wait_for("the gang restart recorded", lambda: jobs.status("crashy").get("restarts") == 1)
    assert by_reason(jobs, "crashy", "Restarting") == [], "the first operator posted no Restarting Event"
    monkeypatch.setattr(Kube, "create_event", post)
    for _ in range(2):  # and a third operator finds it posted: idempotent
        seen = passes()
        with running_operator(operator_kubeconfig):
            events = wait_for("the Restarting Event", lambda: by_reason(jobs, "crashy", "Restarting"))
            wait_for("this operator's first pass", lambda before=seen: passes() > before)
    (event,) = by_reason(jobs, "crashy", "Restarting")
    assert (
        event["type"] == "Warning" and "crashy-h800-0 exited 137" in event["message"] and "restart 1 of backoffLimit 2" in event["message"]
    )
    assert event["count"] == 1 and event["metadata"]["name"].endswith(".restart-1")
    assert events[0]["metadata"]["uid"] == event["metadata"]["uid"]


def test_jobs_carry_no_finalizer_and_their_daemons_stop_when_deleted(kube, jobs, operator_kubeconfig):
    """ownerReferences garbage-collect the workers; kopf's finalizer would only cost writes."""
    with running_operator(operator_kubeconfig):
        assert jobs.apply(small("unfinalized")).returncode == 0
        wait_for("2 running", lambda: jobs.status("unfinalized").get("replicas") == 2)
        assert not jobs.get("unfinalized")["metadata"].get("finalizers")
        kube.kubectl("delete", "a2j", "unfinalized", "-n", jobs.ns, "--wait=true", "--timeout=30s")
        wait_for("the workers garbage-collected", lambda: jobs.pods("unfinalized") == [], timeout=60)
        # The same name again is a new job with its own daemon (the old one has stopped).
        assert jobs.apply(small("unfinalized", elastic={"replicas": 1})).returncode == 0
        wait_for("1 running", lambda: jobs.status("unfinalized").get("replicas") == 1)
