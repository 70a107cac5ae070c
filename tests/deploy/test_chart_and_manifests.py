"""What a user runs first: `helm install` of the chart, then `kubectl apply` of the example jobs."""

import json
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "heurimentor"
MANIFESTS = sorted(p for p in (ROOT / "deploy").glob("*.yaml") if not p.name.startswith("values-"))  # values-*: Helm values


def helm(kube, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(kube.bin_dir / "helm"), *args], env=kube.env, capture_output=True, text=True, timeout=180)


def test_helm_installs_the_chart_and_every_example_job_is_accepted(kube):
    namespace = "platform-e2e"
    # The operator alone (the whole platform's install is tests/deploy/test_chart.py): --wait works.
    installed = helm(kube, "install", "platform-e2e", str(CHART), "-n", namespace, "--create-namespace",
                     "--set", "dmu.enabled=false,tsm.enabled=false", "--wait", "--timeout", "120s")
    assert installed.returncode == 0, installed.stderr
    try:
        # Strict field validation catches schema slips such as a YAML flow-mapping comma inside a description.
        for crd_file in sorted((CHART / "crds").glob("*.yaml")):
            strict = kube.kubectl("apply", "--server-side", "--force-conflicts", "--dry-run=server",
                                  "--validate=strict", "-f", str(crd_file), check=False)
            assert strict.returncode == 0, f"{crd_file.name}: {strict.stderr}"
        crd = json.loads(kube.kubectl("get", "crd", "aquila2trainingjobs.heurimentor.io", "-o", "json").stdout)
        assert crd["spec"]["names"]["kind"] == "Aquila2TrainingJob"
        deployments = json.loads(kube.kubectl("get", "deployments", "-n", namespace, "-o", "json").stdout)["items"]
        assert [(d["metadata"]["name"], d["status"].get("readyReplicas")) for d in deployments] == [("platform-e2e-operator", 2)]

        assert len(MANIFESTS) >= 4
        for manifest in MANIFESTS:
            docs = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
            assert any(d["kind"] == "Aquila2TrainingJob" for d in docs), manifest
            for ns in {d["metadata"].get("namespace", "default") for d in docs}:
                if kube.kubectl("get", "namespace", ns, check=False).returncode != 0:
                    kube.create_namespace(ns)
            # Server-side dry run: the apiserver's schema and CEL rules judge the manifest, nothing is stored.
            applied = kube.kubectl("apply", "--dry-run=server", "-f", str(manifest), check=False)
            assert applied.returncode == 0, f"{manifest.name}: {applied.stderr}"
            assert "(server dry run)" in applied.stdout, applied.stdout
    finally:
        uninstalled = helm(kube, "uninstall", "platform-e2e", "-n", namespace, "--wait")
        assert uninstalled.returncode == 0, uninstalled.stderr
