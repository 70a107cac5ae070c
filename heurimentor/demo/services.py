"""The DMU and the TSM as the demo runs them: subprocesses on loopback ports, SQLite, migrated first."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

DEMO_TOKEN = secrets.token_urlsafe(32)  # a random token, as production requires (docs/security.md)


class DemoError(RuntimeError):
    """A step of the demo failed; the message names the step and its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli() -> list[str]:
    return [sys.executable, "-m", "heurimentor"]


def run_cli(args: list[str], env: dict[str, str], log: Path) -> None:
    """``heurimentor ARGS`` to completion, output appended to ``log``; a failure shows the log's tail."""
    with open(log, "a") as out:
        result = subprocess.run(cli() + args, env=env, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode:
        tail = "\n".join(log.read_text().splitlines()[-30:])
        raise DemoError(f"`heurimentor {' '.join(args)}` failed (exit {result.returncode}); log {log}:\n{tail}")


@contextmanager
def service(name: str, args: list[str], env: dict[str, str], url: str, log: Path) -> Iterator[None]:
    """``heurimentor ARGS`` in its own process group until /readyz answers; stopped on exit."""
    out = open(log, "a")
    process = subprocess.Popen(cli() + args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise DemoError(f"the {name} exited with {process.returncode}; log {log}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise DemoError(f"the {name} was not ready within 60 s; log {log}")
            time.sleep(0.3)
        yield
    finally:
        stop_group(process)
        out.close()


def stop_group(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@dataclass(frozen=True)
class Services:
    dmu_url: str
    tsm_url: str
    env: dict[str, str]  # what every demo subprocess (CLI, services, torchrun) runs with
    logs: Path

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {DEMO_TOKEN}"}


def service_env(work: Path, *, policy: str, mixture: str, dmu_port: int, tsm_port: int) -> dict[str, str]:
    dmu_url = f"http://127.0.0.1:{dmu_port}"
    return dict(
        os.environ,
        # development, said explicitly (the default is production): reads open, so the demo's GETs need no token
        HEURIMENTOR_DMU_ENVIRONMENT="development",
        HEURIMENTOR_TSM_ENVIRONMENT="development",
        HEURIMENTOR_DMU_DATA_DIR=str(work / "dmu"),
        HEURIMENTOR_DMU_AUTH_TOKEN=DEMO_TOKEN,
        HEURIMENTOR_DMU_PORT=str(dmu_port),
        HEURIMENTOR_TSM_DATABASE_URL=f"sqlite:///{work / 'tsm.sqlite3'}",
        HEURIMENTOR_TSM_PORT=str(tsm_port),
        HEURIMENTOR_TSM_DMU_URL=dmu_url,
        HEURIMENTOR_TSM_DMU_TOKEN=DEMO_TOKEN,
        HEURIMENTOR_TSM_AUTH_TOKEN=DEMO_TOKEN,
        HEURIMENTOR_TRAIN__METRICS__TSM_TOKEN=DEMO_TOKEN,  # secrets by env, never in the config file
        HEURIMENTOR_TSM_EVALUATE_INTERVAL_SECONDS="1",
        HEURIMENTOR_TSM_POLICY__NAME=policy,
        HEURIMENTOR_TSM_POLICY__MIXTURE=mixture,
        # A short run: observe 10-step windows and update every 10 steps (weights move by <= 0.1, floor 0.02).
        HEURIMENTOR_TSM_POLICY__WINDOW_STEPS="10",
        HEURIMENTOR_TSM_POLICY__GUARDRAILS__COOLDOWN_STEPS="10",
        HEURIMENTOR_TSM_POLICY__GUARDRAILS__WEIGHT_FLOOR="0.02",
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
    )


@contextmanager
def started_services(work: Path, *, policy: str, mixture: str) -> Iterator[Services]:
    """Migrate both databases, then serve the DMU and the TSM until the block ends."""
    logs = work / "logs"
    dmu_port, tsm_port = free_port(), free_port()
    env = service_env(work, policy=policy, mixture=mixture, dmu_port=dmu_port, tsm_port=tsm_port)
    (work / "dmu").mkdir(exist_ok=True)
    run_cli(["dmu", "migrate"], env, logs / "dmu.log")
    run_cli(["tsm", "migrate"], env, logs / "tsm.log")
    services = Services(f"http://127.0.0.1:{dmu_port}", f"http://127.0.0.1:{tsm_port}", env, logs)
    with ExitStack() as stack:
        stack.enter_context(service("DMU", ["dmu", "serve"], env, services.dmu_url, logs / "dmu.log"))
        stack.enter_context(service("TSM", ["tsm", "serve"], env, services.tsm_url, logs / "tsm.log"))
        yield services
