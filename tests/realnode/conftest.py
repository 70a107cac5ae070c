"""The real node (hack/testenv/realnode.py): kubelet + containerd + runc, pods in real containers.

Here `kube` is the real node's control plane, so the operator's fixtures (CRD, least-privilege
operator user) are the same ones the KWOK suite uses. The images come from `make images`."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hack.testenv.realnode import RealNode, image_archives
from tests.operator.conftest import a2j_crd, namespace, operator_kubeconfig  # noqa: F401 - fixtures on the real node

IMAGES = ("operator", "trainer", "dmu", "tsm", "postgresql")


@pytest.fixture(scope="session")
def real_node(request: pytest.FixtureRequest) -> Iterator[RealNode]:
    """One real node for the session, the operator and trainer images imported (`.timings` has the start-up figures)."""
    state_dir = Path(tempfile.mkdtemp(prefix="heurimentor-realnode-"))
    node = RealNode(state_dir, images=image_archives(IMAGES))
    node.start()  # a failed start tears down what it started and raises with the failing component's log
    sys.stderr.write(f"\n[heurimentor] real node up: {node.timings}\n")
    yield node
    node.stop()
    if request.session.testsfailed:
        # The logs and pod logs say what failed; containerd's images and snapshots (~9 GB) would fill the disk.
        shutil.rmtree(state_dir / "containerd", ignore_errors=True)
        sys.stderr.write(f"\n[heurimentor] tests failed: real-node logs kept in {node.logs}\n")
    else:
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def kube(real_node: RealNode) -> RealNode:
    return real_node
