"""The operator against the real control plane (`kube` fixture): CRD from the chart, the chart's
least-privilege ClusterRole bound to a non-admin user, the operator in-process under that user."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.operator.testlib import CHART, CRD, OPERATOR_USER, Jobs


@pytest.fixture(scope="session")
def a2j_crd(kube) -> Path:
    """The CRD (and kopf's peering CRDs) from the chart, applied and Established."""
    out = kube.kubectl("apply", "-f", str(CRD), "-f", str(CHART / "crds" / "kopf-peerings.yaml"), check=False)
    assert out.returncode == 0, f"the chart's CRDs do not apply: {out.stderr}"
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/aquila2trainingjobs.heurimentor.io")
    return CRD


@pytest.fixture(scope="session")
def operator_kubeconfig(kube, a2j_crd) -> Path:
    """A non-admin user holding exactly the chart's operator ClusterRole."""
    helm = kube.bin_dir / "helm"
    rendered = subprocess.run(
        [str(helm), "template", "hm", str(CHART), "--namespace", "heurimentor-system", "--show-only", "templates/operator-rbac.yaml"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    roles = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "hm-operator"]
    assert len(roles) == 1, f"chart renders no operator ClusterRole: {[d['kind'] for d in docs]}"
    binding = next(d for d in docs if d["kind"] == "ClusterRoleBinding")
    binding["metadata"]["name"] = "hm-operator-test-user"
    binding["subjects"] = [{"kind": "User", "name": OPERATOR_USER, "apiGroup": "rbac.authorization.k8s.io"}]
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([roles[0], binding]))
    return kube.user_kubeconfig(OPERATOR_USER)


@pytest.fixture
def namespace(kube) -> Iterator[str]:
    name = kube.create_namespace(f"a2j-{uuid.uuid4().hex[:8]}")
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def jobs(kube, namespace) -> Jobs:
    return Jobs(kube, namespace)
