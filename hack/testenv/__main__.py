"""`python -m hack.testenv cluster-up|cluster-down|status`: the local control plane from a shell (make cluster-up).

With REAL_NODE=1, cluster-up starts a real node instead of KWOK (hack/testenv/realnode.py), its
images from `make images` (REAL_NODE_IMAGES, default all five: what the chart and its jobs run) imported into containerd."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from hack.testenv.kube import REPO_ROOT, ControlPlane, tools_bin_dir
from hack.testenv.procs import ServerStartError


def _state_dir() -> Path:
    """$HEURIMENTOR_CLUSTER_DIR, else $HEURIMENTOR_CACHE/cluster (default ~/.cache/heurimentor/cluster)."""
    if os.environ.get("HEURIMENTOR_CLUSTER_DIR"):
        return Path(os.environ["HEURIMENTOR_CLUSTER_DIR"])
    cache = Path(os.environ.get("HEURIMENTOR_CACHE", Path.home() / ".cache" / "heurimentor"))
    return cache / "cluster"


def _print_env(kubeconfig: str, bin_dir: str) -> None:
    print(f"export KUBECONFIG={kubeconfig}")
    print(f'export PATH="{bin_dir}:$PATH"  # kubectl and helm built by make tools')


def real_node_up(state_dir: Path, images: list[str], timeout: float = 900) -> int:
    """REAL_NODE=1: a supervisor (hack/testenv/realnode.py serve) owns the node; wait for it to be Ready."""
    supervisor_pid = _real_node_supervisor(state_dir)
    if supervisor_pid is None:
        shutil.rmtree(state_dir, ignore_errors=True)
        state_dir.mkdir(parents=True)
        with open(state_dir / "supervisor.log", "ab") as log:
            supervisor = subprocess.Popen(
                [sys.executable, "-m", "hack.testenv.realnode", str(state_dir), *images],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=REPO_ROOT,
            )
        (state_dir / "supervisor.pid").write_text(str(supervisor.pid))
        print(f"# starting a real node (images: {', '.join(images) or 'none'}); logs in {state_dir / 'logs'}", file=sys.stderr)
        deadline = time.monotonic() + timeout
        while not (state_dir / "ready").exists():
            if supervisor.poll() is not None or time.monotonic() > deadline:
                reason = (state_dir / "failed").read_text() if (state_dir / "failed").exists() else f"see {state_dir / 'supervisor.log'}"
                print(f"cluster-up REAL_NODE=1 failed: {reason}", file=sys.stderr)
                if supervisor.poll() is None:
                    supervisor.terminate()
                return 1
            time.sleep(0.5)
    state = json.loads((state_dir / "ready").read_text())
    print(f"# real node up, control plane at {state['server']}: {state['timings']}", file=sys.stderr)
    print('# run this in your shell (or: eval "$(make -s cluster-up REAL_NODE=1)"):', file=sys.stderr)
    _print_env(str(state_dir / "admin.kubeconfig"), str(tools_bin_dir()))
    return 0


def _real_node_supervisor(state_dir: Path) -> int | None:
    try:
        pid = int((state_dir / "supervisor.pid").read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"hack.testenv.realnode" in cmdline else None


def real_node_down(state_dir: Path, timeout: float = 90) -> bool:
    pid = _real_node_supervisor(state_dir)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _real_node_supervisor(state_dir) is not None:
        if time.monotonic() > deadline:
            raise SystemExit(f"the real node's supervisor (pid {pid}) did not stop in {timeout:.0f}s; logs in {state_dir}")
        time.sleep(0.2)
    return True


def cluster_up() -> int:
    state_dir = _state_dir()
    if os.environ.get("REAL_NODE") == "1":
        return real_node_up(state_dir, os.environ.get("REAL_NODE_IMAGES", "operator trainer dmu tsm postgresql").split())
    state = ControlPlane.load_state(state_dir)
    if state and len(ControlPlane.live_pids(state)) == len(state["pids"]):
        print(f"# control plane already running at {state['server']}", file=sys.stderr)
        _print_env(state["kubeconfig"], state["bin_dir"])
        return 0
    if state:
        print("# a previous control plane is partly down: restarting it from scratch", file=sys.stderr)
        ControlPlane.stop_detached(state_dir)
    shutil.rmtree(state_dir, ignore_errors=True)
    try:
        plane = ControlPlane(state_dir, detached=True).start()
    except ServerStartError as e:
        print(f"cluster-up failed: {e}\n(logs in {state_dir / 'logs'})", file=sys.stderr)
        return 1
    nodes = plane.kubectl("get", "nodes", "-L", "heurimentor.io/accelerator,nvidia.com/gpu.product").stdout
    print(f"# control plane up at {plane.server}; logs in {plane.logs}\n# {nodes.replace(chr(10), chr(10) + '# ')}", file=sys.stderr)
    print('# run this in your shell (or: eval "$(make -s cluster-up)"):', file=sys.stderr)
    _print_env(str(plane.kubeconfig), str(plane.bin_dir))
    return 0


def cluster_down() -> int:
    state_dir = _state_dir()
    if real_node_down(state_dir):
        shutil.rmtree(state_dir, ignore_errors=True)
        print("stopped: the real node and its control plane", file=sys.stderr)
        return 0
    stopped = ControlPlane.stop_detached(state_dir)
    shutil.rmtree(state_dir, ignore_errors=True)
    print(f"stopped: {', '.join(stopped) or 'nothing was running'}", file=sys.stderr)
    return 0


def status() -> int:
    state_dir = _state_dir()
    state = ControlPlane.load_state(state_dir)
    if state is None:
        print("no control plane (make cluster-up starts one)")
        return 1
    live = ControlPlane.live_pids(state)
    for name, pid in state["pids"].items():
        print(f"{name:25s} pid {pid:<8d} {'running' if name in live else 'NOT RUNNING'}")
    print(f"server {state['server']}\nexport KUBECONFIG={state['kubeconfig']}")
    return 0 if len(live) == len(state["pids"]) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hack.testenv", description=__doc__)
    parser.add_argument("command", choices=["cluster-up", "cluster-down", "status", "bin-dir"])
    args = parser.parse_args(argv)
    if args.command == "bin-dir":
        print(tools_bin_dir())
        return 0
    return {"cluster-up": cluster_up, "cluster-down": cluster_down, "status": status}[args.command]()


if __name__ == "__main__":
    sys.exit(main())
