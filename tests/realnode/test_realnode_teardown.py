"""A real node leaves the machine as it was: interfaces, routes, iptables rules, mounts, cgroups,
sysctls and processes, after a clean stop and after a start that failed half-way."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hack.testenv.cgroups import CGROUP_FS, CGROUP_ROOT_PREFIX, cgroup_hierarchies
from hack.testenv.procs import ServerStartError
from hack.testenv.realnode import KUBELET_SYSCTLS, PRIVATE_DIRS, RealNode


def _run(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def machine_state(state_dir: Path) -> dict[str, object]:
    """What a node could leave behind, as seen from the machine's own namespaces."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if point.startswith((str(state_dir), *PRIVATE_DIRS, "/proc/sys", str(CGROUP_FS))):
            mounts.append(point)
    return {
        "links": _run("ip", "-o", "link", "show"),
        "addresses": _run("ip", "-o", "addr", "show"),
        "routes": _run("ip", "route", "show", "table", "all"),
        # Counters change with any traffic: keep the rules only.
        "iptables": [line for line in _run("iptables-save").splitlines() if not line.startswith(("#", ":"))],
        "mounts": sorted(mounts),
        "cgroups": sorted(str(p) for h in cgroup_hierarchies() for p in h.iterdir() if p.name.startswith(CGROUP_ROOT_PREFIX)),
        "sysctls": {name: Path("/proc/sys", name).read_text() for name in KUBELET_SYSCTLS},
    }


def test_a_stopped_node_leaves_the_machine_as_it_was(tmp_path):
    before = machine_state(tmp_path)
    node = RealNode(tmp_path / "node")
    try:
        node.start()
        net_ns = os.readlink(f"/proc/{node.holder.pid}/ns/net")
        assert len(_in_netns(net_ns)) >= 8, "etcd, the apiserver, containerd, kubelet, ... run in the node's namespace"
        running = machine_state(tmp_path)
        assert set(running["cgroups"]) - set(before["cgroups"]) == {str(h / node.cgroup_root) for h in cgroup_hierarchies()}
        running.pop("cgroups")
        assert running == {k: v for k, v in before.items() if k != "cgroups"}, (
            "outside its cgroups a running node changes nothing the machine sees"
        )
    finally:
        node.stop()
    assert machine_state(tmp_path) == before
    assert _in_netns(net_ns) == [], "processes left in the node's network namespace"


def test_a_start_that_fails_half_way_is_torn_down(tmp_path):
    before = machine_state(tmp_path)
    # An invalid label: the kubelet exits at start, after containerd, the images and the cgroups.
    node = RealNode(tmp_path / "node", node_labels={"not a label": "x"})
    with pytest.raises(ServerStartError, match="kubelet"):
        node.start()
    assert node.holder is None and not node.processes
    assert machine_state(tmp_path) == before


def _in_netns(net_ns: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and os.readlink(proc / "ns" / "net") == net_ns:
                found.append((proc / "comm").read_text().strip())
        except OSError:
            continue
    return found
