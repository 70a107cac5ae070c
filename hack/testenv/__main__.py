"""`python -m hack.testenv cluster-up|cluster-down|status`: the local control plane from a shell (make cluster-up)."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from hack.testenv.kube import ControlPlane, tools_bin_dir
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


def cluster_up() -> int:
    state_dir = _state_dir()
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
