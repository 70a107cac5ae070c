"""A two-pool job scales up while one pod still mounts an older ConfigMap (real torchrun, gloo on CPU).

Before, the operator rewrote every pool's ``pool_share`` on a rescale; a worker whose mounted file
the kubelet had not refreshed yet computed other row counts than its peers and exited, spending
one of ``--max-restarts``. Now each rank states only (pool, relative throughput) and all ranks
compute the split from what they gathered. Here one node's file is older than the others' (its
pool's throughput was 2 before the spec said 3) and a third node joins mid-run: the job runs with
``--max-restarts=0``, so any disagreement would end it, and every round's ranks agree.
"""

from __future__ import annotations

import copy
import subprocess
import time

from heurimentor.contracts.batch import rows_per_rank
from heurimentor_trainer.data import MixtureSampler, SourceSet
from tests.trainer.testlib import (
    REPO,
    base_config,
    consumed_samples,
    free_port,
    log_records,
    make_sources,
    stop_torchrun,
    torchrun_cmd,
    worker_env,
    write_config,
)

STEPS, GLOBAL_BATCH = 60, 12


def _agent(config_path, endpoint: str, log_path):
    command = [arg for arg in torchrun_cmd(config_path, nproc=1, nnodes="2:3", max_restarts=0) if not arg.startswith("--rdzv-endpoint")]
    command[3:3] = ["--rdzv-endpoint", endpoint]
    log_file = open(log_path, "w")
    return subprocess.Popen(command, cwd=REPO, env=worker_env(), stdout=subprocess.DEVNULL, stderr=log_file), log_file


def test_scale_up_with_a_stale_config_keeps_every_rank_on_one_split(tmp_path):
    shards = make_sources(tmp_path / "shards")
    config = base_config(
        tmp_path, shards, steps=STEPS, micro_batch=1, **{"checkpoint.interval": 5, "checkpoint.keep": 3, "metrics.eval_interval": 1000}
    )
    configs = {}
    for name, pool, throughput in (("h800-stale", "h800", 2.0), ("h800", "h800", 3.0), ("a100", "a100", 1.0)):
        body = copy.deepcopy(config)
        body.update(pool=pool, relative_throughput=throughput)
        configs[name] = write_config(tmp_path / f"train-{name}.yaml", body)
    endpoint = f"127.0.0.1:{free_port()}"
    agents = {}
    try:
        for name in ("h800-stale", "a100"):
            agents[name] = _agent(configs[name], endpoint, tmp_path / f"{name}.log")
        progress = tmp_path / "samples" / "rank1.jsonl"
        deadline = time.monotonic() + 180
        while not (progress.exists() and progress.read_text().count("\n") >= 2):
            for name, (agent, _) in agents.items():
                assert agent.poll() is None, f"{name} ended before the scale-up:\n{(tmp_path / f'{name}.log').read_text()[-3000:]}"
            assert time.monotonic() < deadline, "the two-node job never reached step 2"
            time.sleep(0.05)
        agents["h800"] = _agent(configs["h800"], endpoint, tmp_path / "h800.log")  # the scale-up: a new pod, a fresh file
        for name, (agent, _) in agents.items():
            assert agent.wait(timeout=300) == 0, f"{name} failed:\n{(tmp_path / f'{name}.log').read_text()[-5000:]}"
    finally:
        for agent, log_file in agents.values():
            if agent.poll() is None:
                stop_torchrun(agent)
            log_file.close()

    text = "".join((tmp_path / f"{name}.log").read_text() for name in agents)
    splits = {r["world_size"]: r for r in log_records(text, "batch split")}
    assert sorted(splits) == [2, 3], "expected one split before and one after the scale-up"
    for world, split in splits.items():
        ranks = {r["rank"]: r["rows"] for r in log_records(text, "training") if r["world_size"] == world}
        assert sorted(ranks) == list(range(world))
        assert [ranks[r] for r in range(world)] == split["rows"], f"world {world}: a rank disagrees with rank 0's split"
        assert sum(split["rows"]) == GLOBAL_BATCH
        assert split["pools"]["a100"]["ranks"] == 1 and split["pools"]["h800"]["ranks"] == world - 1
    # After the scale-up the stale file said 2 and the fresh one 3: both h800 ranks used one value.
    h800 = splits[3]["pools"]["h800"]["relative_throughput"]
    assert h800 in (2.0, 3.0)
    pools = {r["rank"]: r["pool"] for r in log_records(text, "training") if r["world_size"] == 3}
    stated = [(pools[r], h800 if pools[r] == "h800" else 1.0) for r in range(3)]
    assert splits[3]["rows"] == rows_per_rank(GLOBAL_BATCH, stated)
    warnings = log_records(
        text,
        "ranks of one pool state different relative_throughput (a config change still reaching its pods); "
        "every rank uses the value of the pool's lowest rank",
    )
    assert [w["pools"] for w in warnings] == [{"h800": [h800, 5.0 - h800]}]
    # Nothing was skipped or repeated across the restart: the stream is the one the sampler plans.
    sources = SourceSet(shards, 16, vocab_size=512, val_samples_per_source=2)
    sampler = MixtureSampler(sources.names, sources.train_sizes, seed=7, weights={n: 1.0 for n in sources.names})
    planned = [f"{sources.names[s]}:{i}" for s, i in sampler.plan(GLOBAL_BATCH * STEPS)]
    consumed = consumed_samples(tmp_path / "samples")
    assert sorted(consumed) == list(range(1, STEPS + 1))
    assert [i for step in sorted(consumed) for i in consumed[step]] == planned
