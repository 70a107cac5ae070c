"""Real torchrun (elastic, c10d rendezvous, gloo on CPU): resharded resume and kill-and-resume.

One uninterrupted 2-rank run is the reference: resuming its step-8 checkpoint on 1 and on 3
ranks, and a run whose worker is SIGKILLed mid-way (the elastic agent restarts it), must train on
exactly the same samples per step and reproduce its losses.
"""

from __future__ import annotations

import copy
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from heurimentor_trainer.data import MixtureSampler, SourceSet
from tests.trainer.testlib import (
    REPO,
    base_config,
    consumed_samples,
    free_port,
    log_records,
    make_sources,
    run_torchrun,
    serve_app,
    step_losses,
    stop_torchrun,
    torchrun_cmd,
    tsm_app,
    worker_env,
    worker_pid,
    write_config,
)

STEPS, RESUME_AT, GLOBAL_BATCH = 16, 8, 12
LOSS_TOLERANCE = 1e-4  # float reduction order differs between world sizes; nothing else may


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("baseline")
    shards = make_sources(tmp / "shards")
    port = free_port()
    scrapes: list[str] = []
    done = threading.Event()

    def scrape() -> None:  # what Prometheus would see while the job trains
        while not done.is_set():
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text
                if 'heurimentor_train_step{job="test-job",rank="1"}' in text:
                    scrapes.append(text)
            except httpx.HTTPError:
                pass
            done.wait(0.01)

    scraper = threading.Thread(target=scrape, daemon=True)
    scraper.start()
    with serve_app(tsm_app(tmp)) as tsm_url:
        config = base_config(
            tmp,
            shards,
            steps=STEPS,
            **{
                "checkpoint.keep": 10,
                "metrics.tsm_url": tsm_url,
                "metrics.prometheus_dir": str(tmp / "prom"),
                "metrics.prometheus_port": port,
            },
        )
        try:
            stderr = run_torchrun(write_config(tmp / "train.yaml", config), nproc=2, nnodes="1:2")
        finally:
            done.set()
            scraper.join()
        with httpx.Client(base_url=tsm_url) as http:
            curves = {
                key: http.get(f"/v1/jobs/test-job/curves/{key}", params=params).json()
                for key, params in [
                    ("scalar/loss", {}),
                    ("scalar/step_time_seconds", {"rank": 1}),
                    ("val_loss/en", {}),
                    ("layer_weight_std/layers.0", {}),
                ]
            }
            job = http.get("/v1/jobs/test-job").json()
    return SimpleNamespace(
        tmp=tmp,
        shards=shards,
        config=config,
        losses=step_losses(stderr),
        samples=consumed_samples(tmp / "samples"),
        curves=curves,
        scrapes=scrapes,
        tsm_job=job,
    )


def test_uninterrupted_run_consumes_the_planned_stream_once(baseline):
    assert sorted(baseline.losses) == list(range(1, STEPS + 1))
    assert sorted(baseline.samples) == list(range(1, STEPS + 1))
    assert all(len(ids) == GLOBAL_BATCH for ids in baseline.samples.values())
    ids = [i for step in sorted(baseline.samples) for i in baseline.samples[step]]
    assert len(ids) == len(set(ids)), "a sample was repeated within one epoch"
    # The stream is a pure function of seed and mixture history: the sampler alone predicts it.
    sources = SourceSet(baseline.shards, 16, vocab_size=512, val_samples_per_source=2)
    sampler = MixtureSampler(sources.names, sources.train_sizes, seed=7, weights={n: 1.0 for n in sources.names})
    assert ids == [f"{sources.names[s]}:{i}" for s, i in sampler.plan(GLOBAL_BATCH * STEPS)]
    assert {i.split(":")[0] for i in ids} == {"en", "zh", "code"}


def test_metrics_reach_the_tsm_from_every_rank(baseline):
    loss = {p["step"]: p["value"] for p in baseline.curves["scalar/loss"]["points"]}
    assert loss.keys() == baseline.losses.keys()
    assert all(abs(loss[s] - baseline.losses[s]) < 1e-5 for s in loss)
    assert len(baseline.curves["scalar/step_time_seconds"]["points"]) == STEPS  # rank 1's own step times
    assert [p["step"] for p in baseline.curves["val_loss/en"]["points"]] == [4, 8, 12, 16]
    assert all(p["value"] > 0 for p in baseline.curves["layer_weight_std/layers.0"]["points"])
    # The run reached its last step and said so: the TSM will not call its silence a stall.
    assert baseline.tsm_job["completed_step"] == STEPS and baseline.tsm_job["last_step"] == STEPS


def test_prometheus_multiprocess_files_aggregate_every_rank(baseline):
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(baseline.tmp / "prom"))
    tokens = {
        s.labels["rank"]: s.value
        for m in registry.collect()
        if m.name == "heurimentor_train_tokens"
        for s in m.samples
        if s.name.endswith("_total")
    }
    per_rank = GLOBAL_BATCH // 2 * 16 * STEPS  # rows x seq_len x steps
    assert tokens == {"0": pytest.approx(per_rank), "1": pytest.approx(per_rank)}
    # While it trained, local rank 0's endpoint served both ranks' series.
    assert baseline.scrapes, "the endpoint never showed rank 1's metrics"
    # A scrape can land while a rank is between writes of its files: each series must show up in
    # some scrape taken during training, not necessarily in the last one.
    for series in (
        'heurimentor_train_step{job="test-job",rank="0"}',
        'heurimentor_train_step_time_seconds{job="test-job",rank="1"}',
        'heurimentor_train_loss{job="test-job",rank="0"}',
        'heurimentor_train_source_loss{job="test-job",rank="0",source="zh"}',
    ):
        assert any(series in scrape for scrape in baseline.scrapes), (series, baseline.scrapes[-1][-2000:])


def _resume_copy(baseline, tmp: Path) -> dict:
    """The baseline's config on a copy of its checkpoint folder whose latest is step RESUME_AT."""
    ckpt = tmp / "ckpt"
    ckpt.mkdir()
    name = f"step-{RESUME_AT:08d}"
    shutil.copytree(baseline.tmp / "ckpt" / name, ckpt / name)
    (ckpt / "latest").write_text(name)
    config = copy.deepcopy(baseline.config)
    config["checkpoint"]["dir"] = str(ckpt)
    config["data"]["sample_log_dir"] = str(tmp / "samples")
    config["metrics"] = {"eval_interval": 4, "eval_batches": 1}
    return config


@pytest.mark.parametrize("nproc", [1, 3])
def test_resume_on_another_world_size_matches_the_loss_curve(baseline, tmp_path, nproc, record_property):
    config = _resume_copy(baseline, tmp_path)
    stderr = run_torchrun(write_config(tmp_path / "train.yaml", config), nproc=nproc, nnodes=f"1:{nproc}")
    losses = step_losses(stderr)
    assert sorted(losses) == list(range(RESUME_AT + 1, STEPS + 1))
    worst = max(abs(losses[s] - baseline.losses[s]) for s in losses)
    record_property(f"resume_on_{nproc}_loss_max_abs_diff", worst)
    print(f"resume on {nproc} rank(s): loss max |diff| vs uninterrupted 2-rank run = {worst:.3g}")
    assert worst < LOSS_TOLERANCE
    assert consumed_samples(tmp_path / "samples") == {s: baseline.samples[s] for s in range(RESUME_AT + 1, STEPS + 1)}


def test_killed_worker_is_restarted_and_resumes_exactly(baseline, tmp_path):
    config = copy.deepcopy(baseline.config)
    config["checkpoint"]["dir"] = str(tmp_path / "ckpt")
    config["data"]["sample_log_dir"] = str(tmp_path / "samples")
    config["metrics"] = {"eval_interval": 100}
    log_path = tmp_path / "workers.log"
    with open(log_path, "w") as log_file:
        agent = subprocess.Popen(
            torchrun_cmd(write_config(tmp_path / "train.yaml", config), nproc=2, nnodes="1:2", max_restarts=1),
            cwd=REPO,
            env=worker_env(),
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
        try:
            rank1_log = tmp_path / "samples" / "rank1.jsonl"
            deadline = time.monotonic() + 120
            while not (rank1_log.exists() and rank1_log.read_text().count("\n") >= 5):
                assert agent.poll() is None, f"run ended before the kill:\n{log_path.read_text()[-3000:]}"
                assert time.monotonic() < deadline, "the run never reached step 5"
                time.sleep(0.002)
            victim = worker_pid(agent.pid, rank=1)
            assert victim is not None
            os.kill(victim, signal.SIGKILL)
            assert agent.wait(timeout=180) == 0, log_path.read_text()[-6000:]
        finally:
            if agent.poll() is None:
                stop_torchrun(agent)
    runs = {line.split('"run": ')[1].split(",")[0] for line in rank1_log.read_text().splitlines()}
    assert len(runs) == 2, "the worker group was not restarted"
    consumed = consumed_samples(tmp_path / "samples")
    assert consumed == baseline.samples  # same samples at the same steps: none skipped, none repeated
    ids = [i for step in consumed.values() for i in step]
    assert len(ids) == len(set(ids))
    losses = step_losses(log_path.read_text())  # a step re-run after the restart overrides its first try
    assert max(abs(losses[s] - baseline.losses[s]) for s in baseline.losses) < LOSS_TOLERANCE
    ckpt = tmp_path / "ckpt"
    assert (ckpt / "latest").read_text() == f"step-{STEPS:08d}"
    assert not list(ckpt.glob("*.partial"))


def test_heterogeneous_pools_split_the_global_batch_by_share(baseline, tmp_path):
    """Two nodes of different pools (relative throughput 3 and 1) train on the same stream as the baseline."""
    config = copy.deepcopy(baseline.config)
    config.update(micro_batch=3)
    config["checkpoint"] = {"dir": str(tmp_path / "ckpt"), "interval": 1000}
    config["data"]["sample_log_dir"] = str(tmp_path / "samples")
    config["metrics"] = {"eval_interval": 1000}
    path = write_config(tmp_path / "train.yaml", config)
    endpoint = ["--rdzv-endpoint", f"127.0.0.1:{free_port()}"]
    agents = []
    logs = []
    for pool, throughput in (("h800", "3"), ("a100", "1")):
        log_file = open(tmp_path / f"{pool}.log", "w")
        logs.append(log_file)
        command = [arg for arg in torchrun_cmd(path, nproc=1, nnodes="2") if not arg.startswith("--rdzv-endpoint")]
        command[3:3] = endpoint
        agents.append(
            subprocess.Popen(
                command,
                cwd=REPO,
                env=worker_env(HEURIMENTOR_TRAIN__POOL=pool, HEURIMENTOR_TRAIN__RELATIVE_THROUGHPUT=throughput),
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )
        )
    try:
        for agent, pool in zip(agents, ("h800", "a100")):
            assert agent.wait(timeout=180) == 0, (tmp_path / f"{pool}.log").read_text()[-5000:]
    finally:
        for agent in agents:
            if agent.poll() is None:
                stop_torchrun(agent)
        for log_file in logs:
            log_file.close()
    text = "".join((tmp_path / f"{pool}.log").read_text() for pool in ("h800", "a100"))
    rows = {r["rank"]: r["rows"] for r in log_records(text, "training")}
    assert sorted(rows.values()) == [3, 9]
    losses = step_losses(text)
    assert max(abs(losses[s] - baseline.losses[s]) for s in baseline.losses) < LOSS_TOLERANCE
    assert consumed_samples(tmp_path / "samples") == baseline.samples


def test_ranks_that_see_different_checkpoints_fail_with_the_reason_instead_of_hanging(tmp_path):
    """Two agents (two pods) whose checkpoint dirs differ, as per-pod emptyDirs do after a scale:
    one has step 4, the other nothing. Each rank exits with a message naming checkpoint.dir."""
    shards = make_sources(tmp_path / "shards", names=("en", "zh"))
    run_torchrun(write_config(tmp_path / "four.yaml", base_config(tmp_path, shards, steps=4)), nproc=1)
    assert (tmp_path / "ckpt" / "latest").exists()
    command = torchrun_cmd(write_config(tmp_path / "eight.yaml", base_config(tmp_path, shards)), nproc=1, nnodes="2")
    agents = [
        subprocess.Popen(
            command,
            cwd=REPO,
            env=worker_env(HEURIMENTOR_TRAIN__CHECKPOINT__DIR=str(folder)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for folder in (tmp_path / "ckpt", tmp_path / "empty")
    ]
    outputs = []
    for agent in agents:
        try:
            outputs.append(agent.communicate(timeout=180)[1])
        except subprocess.TimeoutExpired:
            for a in agents:
                stop_torchrun(a)
            raise AssertionError("the two ranks hung instead of failing") from None
    assert [a.returncode for a in agents] != [0, 0], outputs
    for output in outputs:
        assert "checkpoint.dir: ranks would resume at different steps (0 to 4" in output, output[-3000:]
