"""Faults on the real node while a 2-worker job trains: a worker's container killed mid-step, and
containerd itself killed for 20 s. Each ends Succeeded on exactly the stream the sampler plans
(the trainer's sample log on the pods' shared volume, each step's latest run counted once)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

from tests.operator.testlib import running_operator, wait_for
from tests.realnode.testlib import assert_stream_exact, elastic_job, last_step, planned_stream, training_runs

# Enough steps that the job still trains when each fault has played out (a CPU step of the debug
# model takes ~0.2 s on an idle machine).
STEPS, GLOBAL_BATCH, SEQ_LEN, INTERVAL = 200, 4, 32, 4


def _status(kube, namespace: str, name: str) -> dict:
    return json.loads(kube.kubectl("get", "a2j", name, "-n", namespace, "-o", "json").stdout).get("status", {})


def _finished(kube, namespace: str, name: str) -> dict:
    return wait_for(
        f"{name} to finish",
        lambda: (s := _status(kube, namespace, name)).get("phase") in ("Succeeded", "Failed") and s,
        timeout=600,
        interval=1,
    )


@contextlib.contextmanager
def _trained_past(real_node, namespace, operator_kubeconfig, tmp_path, name: str, step: int, **run_policy) -> Iterator[tuple[Path, Path]]:
    """A 2-worker job ``name`` under an in-process operator, once it has trained past ``step``: (shards, sample log)."""
    job, shards, samples = elastic_job(
        name, namespace, real_node, tmp_path, steps=STEPS, global_batch=GLOBAL_BATCH, seq_len=SEQ_LEN, interval=INTERVAL,
        runPolicy=run_policy,
    )  # fmt: skip
    with running_operator(operator_kubeconfig):
        real_node.kubectl("apply", "-f", "-", input=yaml.safe_dump(job))
        wait_for(f"a step past {step}", lambda: last_step(samples) > step, timeout=300, interval=0.1)
        yield shards, samples


def test_a_killed_worker_container_is_replaced_and_the_job_resumes_exactly(real_node, namespace, operator_kubeconfig, tmp_path):
    # The survivor's workers fail in their next collective: torchrun restarts them (one of maxRestarts).
    with _trained_past(
        real_node, namespace, operator_kubeconfig, tmp_path, "killed", 2 * INTERVAL, backoffLimit=2, maxRestarts=2, restartBackoffSeconds=1
    ) as (shards, samples):
        pod = json.loads(real_node.kubectl("get", "pod", "killed-cpu-1", "-n", namespace, "-o", "json").stdout)
        container = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
        real_node.ctr("tasks", "kill", "--signal", "SIGKILL", container)
        killed_at = last_step(samples)
        final = _finished(real_node, namespace, "killed")
    logs = real_node.kubectl("logs", "-n", namespace, "-l", "heurimentor.io/job=killed", "--tail=200", check=False).stdout
    assert final["phase"] == "Succeeded", f"{final}\n{logs[-4000:]}"
    assert final["restarts"] == 1, final
    events = json.loads(real_node.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    restarting = [e["message"] for e in events if e["reason"] == "Restarting" and e["involvedObject"]["name"] == "killed"]
    assert len(restarting) == 1 and "killed-cpu-1 exited 137" in restarting[0], restarting
    runs = list(training_runs(samples).values())
    # Then one run or two (the survivor alone, then both again when the replacement pod joins).
    assert 2 <= len(runs) <= 3, f"expected the workers restarted once, got runs {runs}"
    resumed_from = runs[1]["steps"][0]
    assert killed_at - resumed_from < INTERVAL, f"killed at step {killed_at}, resumed at {resumed_from}: more than one interval lost"
    assert_stream_exact(samples, planned_stream(shards, steps=STEPS, global_batch=GLOBAL_BATCH, seq_len=SEQ_LEN), STEPS)


def test_containerd_killed_for_20_s_the_pods_live_on_and_the_job_finishes(real_node, namespace, operator_kubeconfig, tmp_path):
    with _trained_past(
        real_node, namespace, operator_kubeconfig, tmp_path, "nodefault", INTERVAL, backoffLimit=2, maxRestarts=1, restartBackoffSeconds=1
    ) as (shards, samples):
        before = last_step(samples)
        down = time.monotonic()
        real_node.kill_containerd(down_for=20)
        outage = time.monotonic() - down
        during = last_step(samples)
        real_node.wait_real_node_ready(timeout=120)
        pods_after = [
            (p["metadata"]["name"], p["status"].get("phase"), [c.get("state") for c in p["status"].get("containerStatuses", [])])
            for p in json.loads(real_node.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]
        ]
        final = _finished(real_node, namespace, "nodefault")
    print({"containerd down (s)": round(outage, 1), "steps trained while it was down": during - before})
    logs = real_node.kubectl("logs", "-n", namespace, "-l", "heurimentor.io/job=nodefault", "--tail=200", check=False).stdout
    events = json.loads(real_node.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    restarting = [e["message"] for e in events if e["reason"] == "Restarting"]
    assert final["phase"] == "Succeeded", f"{final}\n{logs[-4000:]}"
    # The containers run under their shims, not under containerd: training went on while it was down.
    assert during > before, "no step was trained while containerd was down"
    assert final["restarts"] == 0, f"{final}\nRestarting events: {restarting}\npods after the outage: {pods_after}"
    assert_stream_exact(samples, planned_stream(shards, steps=STEPS, global_batch=GLOBAL_BATCH, seq_len=SEQ_LEN), STEPS)
