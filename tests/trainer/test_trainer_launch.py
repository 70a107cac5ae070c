"""Launchers: the TorchX component (AppDef + a real `torchx run -s local_cwd`) and `heurimentor train`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from heurimentor_trainer.torchx_component import train
from tests.trainer.testlib import REPO, base_config, consumed_samples, free_port, make_sources, worker_env, write_config

BIN = Path(sys.executable).parent


def test_component_builds_an_elastic_torchrun_appdef():
    app = train("--set", "steps=5", config="deploy/train.yaml", j="2:4x8", gpu=8, max_restarts=5, image="registry/heurimentor:1")
    (role,) = app.roles
    command = role.args[-1]
    assert role.image == "registry/heurimentor:1"
    assert (role.min_replicas, role.num_replicas) == (2, 4)
    assert role.resource.gpu == 8
    for fragment in (
        "torchrun --max_restarts 5",
        "--rdzv_backend c10d",
        "--nnodes 2:4",
        "--nproc_per_node 8",
        "-m heurimentor_trainer.train --config deploy/train.yaml --set steps=5",
    ):
        assert fragment in command
    assert role.env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] == "1"


def test_torchx_local_cwd_runs_the_trainer(tmp_path):
    config = write_config(tmp_path / "train.yaml", base_config(tmp_path, make_sources(tmp_path / "shards"), steps=3))
    env = worker_env(PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(
        [
            str(BIN / "torchx"),
            "run",
            "-s",
            "local_cwd",
            "trainer/heurimentor_trainer/torchx_component.py:train",
            "--config",
            str(config),
            "--j",
            "1:1x2",
            "--cpu",
            "2",
            "--rdzv_port",
            str(free_port()),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    consumed = consumed_samples(tmp_path / "samples")
    assert sorted(consumed) == [1, 2, 3] and all(len(ids) == 12 for ids in consumed.values())
    assert (tmp_path / "ckpt" / "latest").read_text() == "step-00000003"


def test_heurimentor_train_runs_and_reports_bad_input(tmp_path):
    config = write_config(tmp_path / "train.yaml", base_config(tmp_path, make_sources(tmp_path / "shards"), steps=2))
    ok = subprocess.run(
        [str(BIN / "heurimentor"), "train", "--config", str(config), "--set", "checkpoint.interval=1"],
        cwd=REPO,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["latest", "step-00000001", "step-00000002"]
    bad = subprocess.run(
        [str(BIN / "heurimentor"), "train", "--config", str(config), "--set", "global_batch=5"],
        cwd=REPO,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0
    assert "error: global_batch=5 cannot be split into micro batches of micro_batch=2" in bad.stderr


def test_bad_downstream_task_is_refused_before_training(tmp_path):
    config = base_config(
        tmp_path,
        make_sources(tmp_path / "shards"),
        steps=2,
        **{"metrics.downstream": [{"kind": "multiple_choice", "path": str(tmp_path / "absent.jsonl")}]},
    )
    result = subprocess.run(
        [sys.executable, "-m", "heurimentor_trainer.train", "--config", str(write_config(tmp_path / "t.yaml", config))],
        cwd=REPO,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "error: metrics.downstream:" in result.stderr and "absent.jsonl" in result.stderr
    assert not (tmp_path / "ckpt").exists() and not (tmp_path / "samples").exists()
