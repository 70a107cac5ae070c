"""`kubectl scale` of a training job on the real node: 2 workers -> 1 -> 2 while it trains.

Each scale re-forms torchrun's world (`--nnodes=1:2`): the operator deletes the highest pod or
adds it back, the survivors re-rendezvous, and every rank resumes from the newest checkpoint on the
shared volume. The trainer's sample log shows which world size trained each step and on which
samples: after both scales the job ends Succeeded with exactly the stream the sampler plans."""

from __future__ import annotations

import json
import time

import yaml

from tests.operator.testlib import running_operator, wait_for
from tests.realnode.testlib import assert_stream_exact, elastic_job, last_step, planned_stream, training_runs

# Enough steps that world size 1 still trains while the scale back to 2 re-forms the world (a CPU
# step of the debug model takes ~0.2 s on an idle machine).
STEPS, GLOBAL_BATCH, SEQ_LEN, INTERVAL = 400, 4, 32, 4
TWO_POOL_STEPS = 160


def test_kubectl_scale_2_1_2_resumes_the_stream_at_each_world_size(real_node, namespace, operator_kubeconfig, tmp_path):
    job, shards, samples = elastic_job(
        "elastic", namespace, real_node, tmp_path, steps=STEPS, global_batch=GLOBAL_BATCH, seq_len=SEQ_LEN, interval=INTERVAL,
        runPolicy={"backoffLimit": 2, "maxRestarts": 4, "restartBackoffSeconds": 2},
    )  # fmt: skip

    def status() -> dict:
        return json.loads(real_node.kubectl("get", "a2j", "elastic", "-n", namespace, "-o", "json").stdout).get("status", {})

    def trains_at(world: int, before: set[int]) -> bool:
        """A run launched after the scale has trained a step with ``world`` ranks (each rank's rows: batch / world)."""
        return any(r not in before and run["rows"] == GLOBAL_BATCH // world for r, run in training_runs(samples).items())

    figures = {}
    with running_operator(operator_kubeconfig):
        real_node.kubectl("apply", "-f", "-", input=yaml.safe_dump(job))
        wait_for("two intervals at world size 2", lambda: last_step(samples) >= 2 * INTERVAL, timeout=300, interval=0.2)
        for world in (1, 2):
            before = set(training_runs(samples))
            scaled = time.monotonic()
            real_node.kubectl("scale", "a2j", "elastic", "-n", namespace, f"--replicas={world}")
            wait_for(f"a step at world size {world}", lambda w=world, b=before: trains_at(w, b), timeout=180, interval=0.2)
            figures[f"kubectl scale -> first step at world size {world}"] = time.monotonic() - scaled
            reached = last_step(samples)
            # A checkpoint at this world size before the next scale, so the next one resumes from it.
            wait_for(f"two intervals at world size {world}", lambda r=reached: last_step(samples) >= r + 2 * INTERVAL, timeout=300)
        final = wait_for("phase Succeeded", lambda: (s := status()).get("phase") in ("Succeeded", "Failed") and s, timeout=600, interval=1)
    print({k: round(v, 1) for k, v in figures.items()})
    logs = real_node.kubectl("logs", "-n", namespace, "-l", "heurimentor.io/job=elastic", "--tail=200", check=False).stdout
    assert final["phase"] == "Succeeded", f"{final}\n{logs[-4000:]}"
    worlds = [len(run["ranks"]) for run in training_runs(samples).values()]
    # 2, then 1 after the scale-down, then 2 again (a re-rendezvous may add a run of the same size).
    assert [w for i, w in enumerate(worlds) if i == 0 or w != worlds[i - 1]] == [2, 1, 2], worlds
    assert_stream_exact(samples, planned_stream(shards, steps=STEPS, global_batch=GLOBAL_BATCH, seq_len=SEQ_LEN), STEPS)
    assert final["step"] == STEPS


def test_a_two_pool_job_scaled_up_while_it_trains_keeps_one_split_and_spends_no_restart(
    real_node, namespace, operator_kubeconfig, tmp_path
):
    """Two pools (two node labels on the one real node; relative throughput 1 and 3), 2 -> 3 workers
    with torchrun's `--max-restarts=0`: the new pod joins by re-rendezvous, every rank computes the same
    split from what the ranks state, and no restart is spent (any disagreement would end the job)."""
    for label in ("heurimentor.io/pool-a", "heurimentor.io/pool-b"):
        real_node.kubectl("label", "node", "realnode", f"{label}=true", "--overwrite")
    job, shards, samples = elastic_job(
        "twopool", namespace, real_node, tmp_path, steps=TWO_POOL_STEPS, global_batch=8, seq_len=SEQ_LEN, interval=INTERVAL,
        runPolicy={"backoffLimit": 0, "maxRestarts": 0},
    )  # fmt: skip
    resources = {"requests": {"cpu": "300m", "memory": "1Gi"}, "limits": {"memory": "3Gi"}}
    job["spec"]["pools"] = [
        {
            "name": "a",
            "nodeSelector": {"heurimentor.io/pool-a": "true"},
            "relativeThroughput": 1.0,
            "maxReplicas": 1,
            "resources": resources,
        },
        {"name": "b", "nodeSelector": {"heurimentor.io/pool-b": "true"}, "relativeThroughput": 3.0, "resources": resources},
    ]
    job["spec"]["elastic"] = {"minReplicas": 2, "maxReplicas": 3, "replicas": 2, "pendingTimeoutSeconds": 120}

    def status() -> dict:
        return json.loads(real_node.kubectl("get", "a2j", "twopool", "-n", namespace, "-o", "json").stdout).get("status", {})

    with running_operator(operator_kubeconfig):
        real_node.kubectl("apply", "-f", "-", input=yaml.safe_dump(job))
        wait_for("two intervals at world size 2", lambda: last_step(samples) >= 2 * INTERVAL, timeout=300, interval=0.2)
        before = set(training_runs(samples))
        scaled = time.monotonic()
        real_node.kubectl("scale", "a2j", "twopool", "-n", namespace, "--replicas=3")
        wait_for("a step at world size 3", lambda: any(len(r["ranks"]) == 3 for k, r in training_runs(samples).items() if k not in before))
        print({"kubectl scale 2 -> 3 (two pools) -> first step at world size 3": round(time.monotonic() - scaled, 1)})
        final = wait_for("phase Succeeded", lambda: (s := status()).get("phase") in ("Succeeded", "Failed") and s, timeout=600, interval=1)
        logs = {
            pod: real_node.kubectl("logs", "-n", namespace, pod, "--tail=-1", check=False).stdout
            for pod in ("twopool-a-0", "twopool-b-0", "twopool-b-1")
        }
    assert final["phase"] == "Succeeded" and final["restarts"] == 0, f"{final}\n{logs['twopool-a-0'][-3000:]}"
    records = [json.loads(line[line.find("{") :]) for text in logs.values() for line in text.splitlines() if '"msg": "training"' in line]
    splits = [json.loads(line[line.find("{") :]) for line in logs["twopool-a-0"].splitlines() if '"msg": "batch split"' in line]
    assert sorted(s["world_size"] for s in splits) == [2, 3], splits
    for split in splits:
        ranks = {r["rank"]: r["rows"] for r in records if r["world_size"] == split["world_size"]}
        assert [ranks[r] for r in range(split["world_size"])] == split["rows"], f"a rank disagrees with rank 0's split {split}"
        assert sum(split["rows"]) == 8
    assert_stream_exact(samples, planned_stream(shards, steps=TWO_POOL_STEPS, global_batch=8, seq_len=SEQ_LEN), TWO_POOL_STEPS)
