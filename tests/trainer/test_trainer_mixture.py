"""The mixture poller and step-boundary switches against the real DMU app (uvicorn on loopback)."""

from __future__ import annotations

import json
import logging
import subprocess
import time

import httpx

from heurimentor_trainer.data import MixturePoller, MixtureSampler, sync_mixture
from tests.trainer.testlib import (
    DMU_TOKEN,
    REPO,
    base_config,
    consumed_samples,
    dmu_app,
    free_port,
    make_sources,
    serve_app,
    stop_torchrun,
    torchrun_cmd,
    worker_env,
    write_config,
)

AUTH = {"Authorization": f"Bearer {DMU_TOKEN}"}
NAMES = ["code", "en", "zh"]
SIZES = [500, 500, 500]


def _create_mixture(url: str, weights: dict[str, float]) -> None:
    with httpx.Client(base_url=url, headers=AUTH) as http:
        for name in NAMES:
            assert http.post("/sources", json={"name": name, "language": "en"}).status_code == 201
        response = http.post("/mixtures", json={"name": "pretrain", "weights": weights, "author": "test", "reason": "start"})
        assert response.status_code == 201, response.text


def _publish(url: str, weights: dict[str, float]) -> int:
    response = httpx.put(f"{url}/mixtures/pretrain", json={"weights": weights, "author": "test", "reason": "shift"}, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()["version"]


def _wait_for(predicate, timeout: float = 10.0) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "condition not reached"
        time.sleep(0.01)
    return time.monotonic() - started


def test_long_poll_delivers_a_new_version_and_the_sampler_switches_at_a_step_boundary(tmp_path):
    with serve_app(dmu_app(tmp_path)) as url:
        _create_mixture(url, {"en": 1, "zh": 1, "code": 1})
        poller = MixturePoller(url, "pretrain", wait=30)
        assert poller.poll_once(wait=0)
        sampler = MixtureSampler(NAMES, SIZES, seed=1, weights={"en": 1.0})
        assert sync_mixture(sampler, poller, 1, device=None)
        assert sampler.version == 1
        sampler.plan(8)
        poller.start()
        try:
            time.sleep(0.3)  # the poller now holds a long-poll open (wait=30 s)
            version = _publish(url, {"zh": 1})
            latency = _wait_for(lambda: poller.latest().version == version)
            assert latency < 5, "a published version must arrive by long-poll, not after the 30 s wait"
        finally:
            poller.stop()
        assert not sync_mixture(sampler, None, 2, device=None)  # no poller: nothing to adopt
        assert sync_mixture(sampler, poller, 3, device=None)
        picks = sampler.plan(50)
        assert {NAMES[s] for s, _ in picks} == {"zh"}
        assert [(e["step"], e["version"]) for e in sampler.history] == [(0, None), (1, 1), (3, 2)]
        assert sampler.version_at(2) == 1 and sampler.version_at(3) == 2
        assert not sync_mixture(sampler, poller, 4, device=None)  # already on the newest


def test_unreachable_dmu_keeps_the_last_weights_and_recovers(tmp_path, caplog):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    poller = MixturePoller(url, "pretrain", wait=1)
    sampler = MixtureSampler(NAMES, SIZES, seed=1, weights={"en": 1, "code": 1})
    with caplog.at_level(logging.WARNING, logger="heurimentor_trainer.data"):
        assert not poller.poll_once(wait=0)
    assert not poller.reachable
    assert any("DMU unreachable" in r.getMessage() for r in caplog.records)
    assert not sync_mixture(sampler, poller, 1, device=None)
    assert sampler.version is None and set(sampler.weights) == set(NAMES) and sampler.weights["zh"] == 0
    poller.start()
    try:
        time.sleep(1.0)  # a few failed polls with backoff, training meanwhile continues
        assert not poller.reachable
        with serve_app(dmu_app(tmp_path), port=port):
            _create_mixture(url, {"zh": 3, "en": 1})
            _wait_for(lambda: poller.latest() is not None, timeout=20)
            assert poller.reachable
    finally:
        poller.stop()
    assert sync_mixture(sampler, poller, 2, device=None)
    assert sampler.weights == {"code": 0.0, "en": 0.25, "zh": 0.75}


def test_mixture_that_names_no_source_of_the_job_is_refused(caplog):
    sampler = MixtureSampler(NAMES, SIZES, seed=1, weights={"en": 1})
    with caplog.at_level(logging.WARNING, logger="heurimentor_trainer.data"):
        assert not sampler.set_mixture(5, 9, {"web": 1.0})
    assert sampler.version is None and sampler.weights["en"] == 1.0
    assert "no positive weight" in caplog.text


def test_training_switches_mixture_mid_run_on_every_rank(tmp_path):
    shards = make_sources(tmp_path / "shards")
    with serve_app(dmu_app(tmp_path)) as url:
        _create_mixture(url, {"en": 1, "zh": 1, "code": 1})
        config = base_config(
            tmp_path,
            shards,
            steps=60,
            **{
                "data.mixture": "pretrain",
                "data.dmu_url": url,
                "data.poll_wait_seconds": 20,
                "checkpoint.interval": 1000,
                "metrics.eval_interval": 1000,
            },
        )
        log_path = tmp_path / "workers.log"
        with open(log_path, "w") as log_file:
            agent = subprocess.Popen(
                torchrun_cmd(write_config(tmp_path / "train.yaml", config), nproc=2, nnodes="1:2"),
                cwd=REPO,
                env=worker_env(),
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )
            try:
                rank0 = tmp_path / "samples" / "rank0.jsonl"
                _wait_for(lambda: rank0.exists() and rank0.read_text().count("\n") >= 3, timeout=120)
                _publish(url, {"code": 1})
                assert agent.wait(timeout=180) == 0, log_path.read_text()[-5000:]
            finally:
                if agent.poll() is None:
                    stop_torchrun(agent)
    records = [json.loads(line) for rank in (0, 1) for line in (tmp_path / "samples" / f"rank{rank}.jsonl").read_text().splitlines()]
    versions = {(r["rank"], r["step"]): r["version"] for r in records}
    switch = min(step for (rank, step), v in versions.items() if v == 2)
    assert 3 < switch <= 60, "the new version must take effect mid-run"
    for (_rank, step), version in versions.items():  # both ranks switch at the same step boundary
        assert version == (2 if step >= switch else 1)
    consumed = consumed_samples(tmp_path / "samples")
    assert all(i.startswith("code:") for step in range(switch, 61) for i in consumed[step])
    assert {i.split(":")[0] for step in range(1, switch) for i in consumed[step]} == {"en", "zh", "code"}


def test_a_published_version_without_usable_weights_is_refused_once(tmp_path, caplog):
    with serve_app(dmu_app(tmp_path)) as url:
        with httpx.Client(base_url=url, headers=AUTH) as http:
            assert http.post("/sources", json={"name": "web", "language": "en"}).status_code == 201
            response = http.post("/mixtures", json={"name": "pretrain", "weights": {"web": 1}, "author": "t", "reason": "r"})
            assert response.status_code == 201, response.text
        poller = MixturePoller(url, "pretrain", wait=0)
        assert poller.poll_once(wait=0)
    sampler = MixtureSampler(NAMES, SIZES, seed=1, weights={"en": 1})
    with caplog.at_level(logging.WARNING, logger="heurimentor_trainer.data"):
        assert not sync_mixture(sampler, poller, 1, device=None)
        assert not sync_mixture(sampler, poller, 2, device=None)
    assert caplog.text.count("no positive weight") == 1  # refused once, not re-tried every step
    assert sampler.version is None and sampler.rejected_version == 1 and sampler.weights["en"] == 1.0
