"""Helpers of the trainer tests: tiny shards, real torchrun launches, real DMU/TSM servers on loopback."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from hack.testenv.asgi import serve_app  # noqa: F401 (the trainer tests serve the DMU and TSM with it)
from heurimentor.contracts.shards import Manifest, write_shard

REPO = Path(__file__).resolve().parents[2]
VOCAB = 512  # the debug preset's vocabulary


def make_sources(root: Path, names=("en", "zh", "code"), *, docs: int = 40, shards: int = 2, seed: int = 0) -> Path:
    """Random-token sources in the DMU's shard format; each source has its own token distribution."""
    rng = np.random.default_rng(seed)
    for k, name in enumerate(names):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        low = 40 * k  # different sources use different token ranges, so per-source losses differ
        infos = [
            write_shard(folder / f"{i:05d}.bin", [rng.integers(low, low + 100, size=rng.integers(30, 200)) for _ in range(docs)], VOCAB)
            for i in range(shards)
        ]
        Manifest(source=name, tokenizer_id="test-bpe", vocab_size=VOCAB, shards=infos).write(folder)
    return root


def base_config(tmp: Path, shard_root: Path, **overrides) -> dict:
    config = {
        "job": "test-job",
        "preset": "debug",
        "steps": 8,
        "global_batch": 12,
        "micro_batch": 2,
        "seq_len": 16,
        "seed": 7,
        "optim": {"warmup_steps": 2, "lr": 3e-3},
        "data": {"shard_root": str(shard_root), "sample_log_dir": str(tmp / "samples"), "val_samples_per_source": 2},
        "checkpoint": {"dir": str(tmp / "ckpt"), "interval": 4, "keep": 2},
        "metrics": {"eval_interval": 4, "eval_batches": 1},
    }
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return config


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEURIMENTOR_TRAIN")}
    # A restarted worker group must not reuse the rendezvous store: pytorch/pytorch#135712 (operator sets it too).
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1",
        **extra,
    )
    return env


def torchrun_cmd(config: Path, *, nproc: int, nnodes: str = "1", max_restarts: int = 0, extra: list[str] = ()) -> list[str]:
    """A real elastic launch: c10d rendezvous on a loopback port, as the operator's pods run it."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nnodes={nnodes}",
        f"--nproc-per-node={nproc}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{free_port()}",
        "--rdzv-id=test",
        "--rdzv-conf=last_call_timeout=1,join_timeout=60",
        f"--max-restarts={max_restarts}",
        "--monitor-interval=0.2",
        "-m",
        "heurimentor_trainer.train",
        "--config",
        str(config),
        *extra,
    ]


def run_torchrun(config: Path, *, nproc: int, nnodes: str = "1", timeout: float = 240, extra: list[str] = ()) -> str:
    """Run to completion; returns the workers' combined stderr (their JSON logs)."""
    process = subprocess.Popen(
        torchrun_cmd(config, nproc=nproc, nnodes=nnodes, extra=extra),
        cwd=REPO,
        env=worker_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_torchrun(process)
        raise AssertionError(f"torchrun did not finish in {timeout} s:\n{process.stderr.read()[-6000:]}") from None
    if process.returncode != 0:
        raise AssertionError(f"torchrun failed ({process.returncode}):\n{stderr[-6000:]}")
    return stderr


def stop_torchrun(process: subprocess.Popen) -> None:
    """SIGTERM: the elastic agent stops its workers (they run in their own sessions) before exiting."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def worker_pid(agent_pid: int, rank: int) -> int | None:
    """The pid of the agent's worker process with the given RANK (from /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == agent_pid and f"RANK={rank}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                return int(entry.name)
        except (OSError, IndexError, ValueError):
            continue
    return None


def log_records(text: str, msg: str) -> list[dict]:
    """JSON log lines with the given message (other output, e.g. torchrun's own, is skipped)."""
    out = []
    for line in text.splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            record = json.loads(line[start:])
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("msg") == msg:
            out.append(record)
    return out


def step_losses(text: str) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in log_records(text, "step") if "loss" in r}


def consumed_samples(sample_dir: Path) -> dict[int, list[str]]:
    """step -> the sample ids that step trained on (over all ranks), from the latest run of each step."""
    records = [json.loads(line) for path in sorted(sample_dir.glob("rank*.jsonl")) for line in path.read_text().splitlines()]
    latest_run = {}
    for r in records:
        latest_run[r["step"]] = max(latest_run.get(r["step"], 0), r["run"])
    by_step: dict[int, list[tuple[int, list[str]]]] = {}
    for r in records:
        if r["run"] == latest_run[r["step"]]:
            by_step.setdefault(r["step"], []).append((r["rank"], r["ids"]))
    return {step: [i for _, ids in sorted(rows) for i in ids] for step, rows in sorted(by_step.items())}


DMU_TOKEN = secrets.token_urlsafe(32)


def dmu_app(tmp: Path):
    """The real DMU app on a migrated SQLite database."""
    from dmu_service.api.main import create_app
    from dmu_service.config import Settings
    from dmu_service.migrations import upgrade

    settings = Settings(
        database_url=f"sqlite:///{tmp / 'dmu.sqlite3'}",
        data_dir=tmp,
        auth_token=DMU_TOKEN,
        mixture_poll_interval_s=0.05,
        reads_require_auth=False,
    )
    upgrade(settings.sqlalchemy_url)
    return create_app(settings)


def tsm_app(tmp: Path, database_url: str | None = None, **settings):
    """The real TSM app on a migrated database, SQLite unless ``database_url`` names one (detector loop off)."""
    from tsm_service.api.main import create_app
    from tsm_service.config import load_settings
    from tsm_service.migrations import upgrade

    url = database_url or f"sqlite:///{tmp / 'tsm.sqlite3'}"
    upgrade(url)
    # development: writes open unless a test passes auth_token (production is docs/security.md's and tests/tsm's)
    return create_app(
        load_settings(**{"database_url": url, "evaluate_interval_seconds": 0, "log_json": False, "environment": "development", **settings})
    )
