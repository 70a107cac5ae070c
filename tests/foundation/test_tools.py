"""hack/build-tools.sh built exactly the versions hack/versions.env pins, and `make cluster-up` works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hack.testenv.kube import tools_bin_dir

REPO_ROOT = Path(__file__).resolve().parents[2]


def pinned() -> dict[str, str]:
    pairs = (
        line.split("=", 1) for line in (REPO_ROOT / "hack" / "versions.env").read_text().splitlines() if line and not line.startswith("#")
    )
    return {key: value for key, value in pairs}


@pytest.mark.parametrize(
    ("binary", "args", "version_key", "expected_format"),
    [
        ("kube-apiserver", ["--version"], "KUBERNETES_VERSION", "Kubernetes {}"),
        ("kube-controller-manager", ["--version"], "KUBERNETES_VERSION", "Kubernetes {}"),
        ("kube-scheduler", ["--version"], "KUBERNETES_VERSION", "Kubernetes {}"),
        ("etcd", ["--version"], "ETCD_VERSION", "etcd Version: {}"),
        ("helm", ["version", "--short"], "HELM_VERSION", "{}"),
        ("kwok", ["--version"], "KWOK_VERSION", "kwok version {}"),
    ],
)
def test_binaries_match_pinned_versions(binary, args, version_key, expected_format):
    out = subprocess.run([str(tools_bin_dir() / binary), *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    version = pinned()[version_key]
    if binary == "etcd":
        version = version.removeprefix("v")
    assert expected_format.format(version) in out.stdout


def test_cluster_up_prints_kubeconfig_and_lists_gpu_nodes(tmp_path):
    env = {**os.environ, "HEURIMENTOR_CLUSTER_DIR": str(tmp_path / "cluster")}
    up = subprocess.run(
        [sys.executable, "-m", "hack.testenv", "cluster-up"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    try:
        assert up.returncode == 0, up.stderr
        exports = dict(
            line.removeprefix("export ").split("=", 1) for line in up.stdout.splitlines() if line.startswith("export KUBECONFIG=")
        )
        kubeconfig = exports["KUBECONFIG"]
        assert kubeconfig == str(tmp_path / "cluster" / "admin.kubeconfig")
        # A second cluster-up finds it running and prints the same export.
        again = subprocess.run(
            [sys.executable, "-m", "hack.testenv", "cluster-up"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert f"export KUBECONFIG={kubeconfig}" in again.stdout
        assert "already running" in again.stderr
        nodes = subprocess.run(
            [str(tools_bin_dir() / "kubectl"), "get", "nodes", "-o", "json"],
            env={**env, "KUBECONFIG": kubeconfig},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert nodes.returncode == 0, nodes.stderr
        gpus = {n["metadata"]["name"]: n["status"]["capacity"].get("nvidia.com/gpu") for n in json.loads(nodes.stdout)["items"]}
        assert gpus == {"kwok-gpu-a100-0": "8", "kwok-gpu-h800-0": "8", "kwok-cpu-0": None}
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "hack.testenv", "cluster-down"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
        )
    assert down.returncode == 0, down.stderr
    assert "stopped: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok" in down.stderr
    assert not (tmp_path / "cluster").exists()
