"""The real node's cgroups (hack/testenv/realnode.py): one root per node in every hierarchy of
this machine (cgroup v1 controllers and the hybrid unified one), emptied and removed on teardown."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from hack.testenv.procs import ServerStartError

CGROUP_FS = Path("/sys/fs/cgroup")
CGROUP_ROOT_PREFIX = "heurimentor-realnode-"


def cgroup_hierarchies() -> list[Path]:
    return [p for p in sorted(CGROUP_FS.iterdir()) if (p / "cgroup.procs").exists()]


def make_cgroups(root: str) -> None:
    """The kubelet's cgroupRoot in every hierarchy (it must exist); cpuset needs cpus/mems to take tasks."""
    for hierarchy in cgroup_hierarchies():
        path = hierarchy / root
        path.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):
            if (path / name).exists() and not (path / name).read_text().strip():
                (path / name).write_text((hierarchy / name).read_text())


def pids_in_cgroups(root: str) -> list[int]:
    pids: set[int] = set()
    for hierarchy in cgroup_hierarchies():
        for directory, _dirs, files in os.walk(hierarchy / root):
            if "cgroup.procs" in files:
                try:
                    pids.update(int(p) for p in Path(directory, "cgroup.procs").read_text().split())
                except OSError:
                    continue
    return sorted(pids)


def remove_cgroups(root: str, timeout: float = 20) -> None:
    """Kill what is left in the cgroups under `root`, then remove them, deepest first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in pids_in_cgroups(root):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        left = []
        for hierarchy in cgroup_hierarchies():
            top = hierarchy / root
            if not top.exists():
                continue
            for directory, _dirs, _files in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
                try:
                    os.rmdir(directory)
                except OSError:
                    left.append(directory)
        if not left:
            return
        time.sleep(0.2)
    raise ServerStartError(f"cgroups under {root} could not be removed: {left}")


def remove_stale_cgroups() -> None:
    """Cgroup roots of real nodes whose test process was killed before it could tear down."""
    roots = {p.name for h in cgroup_hierarchies() for p in h.iterdir() if p.is_dir() and p.name.startswith(CGROUP_ROOT_PREFIX)}
    for root in roots:
        if not _kubelet_running(root):
            remove_cgroups(root)


def _kubelet_running(root: str) -> bool:
    """Whether a kubelet whose config names this cgroup root is running (another live node's)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"kubelet"):
            for arg in cmdline:
                if arg.startswith(b"--config="):
                    try:
                        if root in Path(arg[len("--config=") :].decode()).read_text():
                            return True
                    except OSError:
                        continue
    return False
