"""Operator restarts and replicas: no duplicate pods, adoption of what a dead operator left, peering."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import yaml

from heurimentor_operator.builders import build_pod
from heurimentor_operator.spec import parse_job
from tests.operator.testlib import running_operator, wait_for
from tests.operator.testlib_manifests import job


def small(name, **overrides):
    body = job(name=name, **overrides)
    for pool in body["spec"]["pools"]:
        pool["resources"] = {"limits": {"nvidia.com/gpu": 1}}
    return body


def pod_uids(jobs, name):
    return {p["metadata"]["name"]: p["metadata"]["uid"] for p in jobs.pods(name)}


def test_restarted_operator_adopts_and_creates_no_duplicates(kube, jobs, operator_kubeconfig):
    with running_operator(operator_kubeconfig):
        assert jobs.apply(small("durable", elastic={"replicas": 3})).returncode == 0
        before = wait_for(
            "3 running", lambda: (u := pod_uids(jobs, "durable")) and len(u) == 3 and jobs.status("durable").get("replicas") == 3 and u
        )
    # Operator down. A scale-up arrives, and one pod of it already exists, as if the old operator
    # had created it and died before anything else.
    kube.kubectl("scale", "a2j/durable", "-n", jobs.ns, "--replicas=4")
    live = jobs.get("durable")
    spec = parse_job(live)
    orphan = build_pod(spec, spec.pools[1], 2, attempt=live["status"]["attempt"])
    kube.kubectl("create", "-f", "-", input=yaml.safe_dump(orphan))
    orphan_uid = pod_uids(jobs, "durable")["durable-h800-2"]
    with running_operator(operator_kubeconfig):
        after = wait_for(
            "4 running", lambda: (u := pod_uids(jobs, "durable")) and len(u) == 4 and jobs.status("durable").get("replicas") == 4 and u
        )
        wait_for("a few quiet resyncs", lambda: jobs.status("durable").get("observedGeneration") == live["metadata"]["generation"])
    assert {k: after[k] for k in before} == before, "the restarted operator replaced pods it should have kept"
    assert after["durable-h800-2"] == orphan_uid, "the pre-existing pod was not adopted"
    all_pods = json.loads(kube.kubectl("get", "pods", "-n", jobs.ns, "-o", "json").stdout)["items"]
    assert len(all_pods) == 4


@contextmanager
def operator_process(kubeconfig, *, peering: str, priority: int, log_path: Path):
    """One operator replica as its own process (`heurimentor operator run`), as in a Deployment.

    Separate processes, not two kopf runners in this one: kopf keeps per-process state that two
    in-process replicas would share."""
    env = dict(os.environ, KUBECONFIG=str(kubeconfig), HEURIMENTOR_OPERATOR_LOG_JSON="false")
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "heurimentor",
                "operator",
                "run",
                "--peering",
                peering,
                "--priority",
                str(priority),
                "--metrics-port",
                "0",
                "--health-port",
                "0",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_two_replicas_with_peering_hand_over(kube, jobs, operator_kubeconfig, tmp_path):
    peering = "hm-peering-test"
    kube.kubectl(
        "apply", "-f", "-", input=yaml.safe_dump({"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": peering}})
    )
    low_log, high_log = tmp_path / "priority-10.log", tmp_path / "priority-100.log"
    with operator_process(operator_kubeconfig, peering=peering, priority=10, log_path=low_log):
        with operator_process(operator_kubeconfig, peering=peering, priority=100, log_path=high_log) as high:
            # Both replicas announce themselves, with their priorities, in the shared peering object; kopf
            # then lets only the highest priority work (its pause/resume timing is kopf's, not asserted here).
            def peer_priorities():
                status = json.loads(kube.kubectl("get", "clusterkopfpeering", peering, "-o", "json").stdout).get("status") or {}
                return sorted(entry.get("priority") for entry in status.values())

            wait_for("both replicas in the peering object", lambda: peer_priorities() == [10, 100], timeout=60)
            assert jobs.apply(small("peered", elastic={"replicas": 2})).returncode == 0
            wait_for("2 running", lambda: jobs.status("peered").get("replicas") == 2, timeout=60)
            assert high.poll() is None, high_log.read_text()[-3000:]
        # The priority-100 replica is gone; the other one takes over.
        kube.kubectl("scale", "a2j/peered", "-n", jobs.ns, "--replicas=3")
        wait_for("3 running after hand-over", lambda: jobs.status("peered").get("replicas") == 3, timeout=90)
    assert len(jobs.pods("peered")) == 3
