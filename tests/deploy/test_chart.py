"""The chart as a user meets it, on the real control plane (`kube` fixture): `helm lint`, every
rendered object judged by the apiserver (server-side dry run, strict field validation), install,
upgrade and uninstall with what exists after each, and bad values refused by values.schema.json.

The cluster's pods are KWOK's: they become Running and Ready without running anything. The
migration hook's and `helm test`'s pods are marked finished here (KWOK's exit-code annotation), as a
kubelet would once their commands exit; those commands themselves run for real in test_images.py.
The Prometheus Operator's CRDs are not on this machine: stand-ins with its group, version and kinds
(an open schema) make the cluster serve those APIs, so `.Capabilities` sees them.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "heurimentor"
DEV_VALUES = ROOT / "deploy" / "values-dev.yaml"
PRODUCTION_VALUES = ROOT / "deploy" / "values-production.yaml"
MONITORING_APIS = [
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.coreos.com/v1/PodMonitor",
    "monitoring.coreos.com/v1/PrometheusRule",
]
EXIT_CODE = "kwok.heurimentor.io/exit-code"


def helm(kube, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([str(kube.bin_dir / "helm"), *args], env=kube.env, capture_output=True, text=True, timeout=300)
    if check:
        assert out.returncode == 0, f"helm {' '.join(args[:2])}: {out.stderr}"
    return out


def render(kube, *values: str, namespace: str = "hm", api_versions: bool = True) -> list[dict]:
    extra = [a for api in MONITORING_APIS for a in ("--api-versions", api)] if api_versions else []
    out = helm(kube, "template", "hm", str(CHART), "--namespace", namespace, *extra, *values)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def stand_in_crd(kind: str, plural: str) -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                        }
                    },
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def cluster(kube):
    """The chart's CRDs and the monitoring stand-ins, Established."""
    crds = [
        stand_in_crd("ServiceMonitor", "servicemonitors"),
        stand_in_crd("PodMonitor", "podmonitors"),
        stand_in_crd("PrometheusRule", "prometheusrules"),
    ]
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(crds))
    kube.kubectl("apply", "-f", str(CHART / "crds"))
    kube.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/podmonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
        "crd/aquila2trainingjobs.heurimentor.io",
    )
    return kube


def test_helm_lint_passes_with_default_dev_and_production_values(kube):
    for values in ([], ["-f", str(DEV_VALUES)], ["-f", str(PRODUCTION_VALUES)]):
        out = helm(kube, "lint", "--strict", str(CHART), *values)
        assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout, out.stdout


def test_monitoring_objects_render_only_when_the_cluster_serves_their_apis(kube):
    kinds = [d["kind"] for d in render(kube, api_versions=False)]
    assert not {"ServiceMonitor", "PodMonitor", "PrometheusRule"} & set(kinds), kinds
    assert kinds.count("ConfigMap") == 2  # the dashboards are plain ConfigMaps, always there
    kinds = [d["kind"] for d in render(kube)]
    assert kinds.count("ServiceMonitor") == 3 and kinds.count("PodMonitor") == 1 and kinds.count("PrometheusRule") == 1


@pytest.mark.parametrize(
    "values",
    [
        [],
        ["-f", str(DEV_VALUES)],
        ["-f", str(PRODUCTION_VALUES), "--set", "worker.namespaces={hm-team}"],
        [
            "--set",
            "operator.replicas=1,operator.peering.standalone=true,operator.namespaces={hm-team}",
            "--set",
            "migrations.helmHook=false,dmu.persistence.existingClaim=my-shards,tokens.existingSecret=my-tokens",
        ],
    ],
    ids=["defaults", "dev", "production", "standalone-namespaced"],
)
def test_every_rendered_object_is_accepted_by_the_apiserver(cluster, values):
    for ns in ("hm", "hm-team"):
        if cluster.kubectl("get", "namespace", ns, check=False).returncode != 0:
            cluster.create_namespace(ns)
    docs = render(cluster, *values)
    out = cluster.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-", input=yaml.safe_dump_all(docs), check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("(server dry run)") == len(docs), out.stdout
    kinds = [d["kind"] for d in docs]
    assert kinds.count("Deployment") == 3, kinds
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet"):
            pod = d["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True, d["metadata"]["name"]
            for c in pod["containers"]:
                assert c["securityContext"]["readOnlyRootFilesystem"] is True and "resources" in c, c["name"]
                assert "readinessProbe" in c or c["name"] == "operator", c["name"]
    dashboards = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert len(dashboards) == 2 and all(json.loads(next(iter(d["data"].values())))["uid"] for d in dashboards)


class PodFinisher:
    """Marks the hook and test pods of a release Succeeded (KWOK's exit-code annotation), as the kubelet
    would when their commands exit 0; runs in a thread while helm waits for them."""

    SELECTORS = ("app.kubernetes.io/name=heurimentor-migrations", "app.kubernetes.io/component=helm-test")

    def __init__(self, kube, namespace: str):
        self.kube, self.ns, self.stop = kube, namespace, threading.Event()
        self.finished: set[str] = set()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.5):
            for selector in self.SELECTORS:
                out = self.kube.kubectl("get", "pods", "-n", self.ns, "-l", selector, "-o", "name", check=False)
                for pod in out.stdout.split():
                    if pod not in self.finished:
                        self.kube.kubectl("annotate", pod, "-n", self.ns, f"{EXIT_CODE}=0", "--overwrite", check=False)
                        self.finished.add(pod)

    def __enter__(self) -> PodFinisher:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def static_volumes(kube, release: str, namespace: str) -> None:
    """hostPath PersistentVolumes pre-bound to the chart's claims: this cluster has no provisioner."""
    claims = [f"{release}-dmu-shards", f"data-{release}-postgresql-0"]
    pvs = [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": f"pv-{namespace}-{claim}"},
            "spec": {
                "capacity": {"storage": "100Gi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": f"/tmp/{namespace}-{claim}"},
                "claimRef": {"namespace": namespace, "name": claim},
            },
        }
        for claim in claims
    ]
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(pvs))


def objects(kube, kind: str, namespace: str, release: str) -> dict[str, dict]:
    out = kube.kubectl("get", kind, "-n", namespace, "-l", f"app.kubernetes.io/instance={release}", "-o", "json")
    return {o["metadata"]["name"]: o for o in json.loads(out.stdout)["items"]}


def wait_rollout(kube, namespace: str) -> None:
    kube.kubectl("rollout", "status", "deployment", "-n", namespace, "--timeout=120s")
    kube.kubectl("rollout", "status", "statefulset", "-n", namespace, "--timeout=120s")


@pytest.fixture
def release_namespace(cluster) -> Iterator[str]:
    namespace = cluster.create_namespace("hm-lifecycle")
    yield namespace
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_install_upgrade_uninstall(cluster, release_namespace):
    kube, ns, release = cluster, release_namespace, "life"
    static_volumes(kube, release, ns)
    common = ["-n", ns, "--set", "dmu.persistence.storageClass=-,database.bundled.persistence.storageClass=-", "--timeout", "180s",
              "--set", f"worker.namespaces={{{ns}}}"]  # fmt: skip
    with PodFinisher(kube, ns):
        out = helm(kube, "install", release, str(CHART), *common)
    assert f"helm test {release} -n {ns}" in out.stdout, out.stdout  # NOTES.txt: the next commands
    wait_rollout(kube, ns)
    deployments = objects(kube, "deployments", ns, release)
    assert set(deployments) == {f"{release}-operator", f"{release}-dmu", f"{release}-tsm"}
    assert deployments[f"{release}-operator"]["status"].get("readyReplicas") == 2
    assert set(objects(kube, "statefulsets", ns, release)) == {f"{release}-postgresql"}
    secrets = objects(kube, "secrets", ns, release)
    tokens = {k: base64.b64decode(v).decode() for k, v in secrets[f"{release}-tokens"]["data"].items()}
    assert set(tokens) == {"dmu-token", "tsm-token", "metrics-token", "worker-dmu-token", "worker-tsm-token"}
    assert all(len(t) == 48 for t in tokens.values()) and len(set(tokens.values())) == 5
    # The trainers' copy in each worker namespace holds the same two tokens the services accept.
    workers = {k: base64.b64decode(v).decode() for k, v in secrets["heurimentor-worker-tokens"]["data"].items()}
    assert workers == {"dmu-token": tokens["worker-dmu-token"], "tsm-token": tokens["worker-tsm-token"]}
    database = secrets[f"{release}-database"]["data"]
    password = base64.b64decode(database["password"]).decode()
    assert f":{password}@{release}-postgresql:5432/dmu" in base64.b64decode(database["dmu-url"]).decode()
    claims = json.loads(kube.kubectl("get", "pvc", "-n", ns, "-o", "json").stdout)["items"]
    assert {c["metadata"]["name"]: c["status"]["phase"] for c in claims} == {
        f"{release}-dmu-shards": "Bound",
        f"data-{release}-postgresql-0": "Bound",
    }
    # The migration hook ran to completion and was removed (hook-succeeded).
    assert kube.kubectl("get", "job", f"{release}-migrate", "-n", ns, check=False).returncode != 0

    with PodFinisher(kube, ns):
        tested = helm(kube, "test", release, "-n", ns, "--timeout", "120s")
    assert f"{release}-test-services" in tested.stdout and "Succeeded" in tested.stdout, tested.stdout

    # A values change of the TSM rolls the TSM only; the generated secrets are kept (lookup).
    generations = {name: d["metadata"]["generation"] for name, d in deployments.items()}
    sts_generation = objects(kube, "statefulsets", ns, release)[f"{release}-postgresql"]["metadata"]["generation"]
    with PodFinisher(kube, ns):
        helm(kube, "upgrade", release, str(CHART), *common, "--reuse-values", "--set", "tsm.logLevel=DEBUG")
    wait_rollout(kube, ns)
    after = {name: d["metadata"]["generation"] for name, d in objects(kube, "deployments", ns, release).items()}
    assert after == {**generations, f"{release}-tsm": generations[f"{release}-tsm"] + 1}, (generations, after)
    assert objects(kube, "statefulsets", ns, release)[f"{release}-postgresql"]["metadata"]["generation"] == sts_generation
    kept = objects(kube, "secrets", ns, release)
    assert kept[f"{release}-tokens"]["data"] == secrets[f"{release}-tokens"]["data"] and kept[f"{release}-database"]["data"] == database

    helm(kube, "uninstall", release, "-n", ns, "--wait", "--timeout", "120s")
    for kind in (
        "deployments",
        "statefulsets",
        "services",
        "secrets",
        "configmaps",
        "serviceaccounts",
        "jobs",
        "servicemonitors",
        "podmonitors",
        "prometheusrules",
    ):
        assert objects(kube, kind, ns, release) == {}, f"{kind} left after uninstall"
    assert kube.kubectl("get", "clusterrole", f"{release}-operator", check=False).returncode != 0
    # What the user keeps: the data (both claims) and the CRD.
    left = {c["metadata"]["name"] for c in json.loads(kube.kubectl("get", "pvc", "-n", ns, "-o", "json").stdout)["items"]}
    assert left == {f"{release}-dmu-shards", f"data-{release}-postgresql-0"}
    assert kube.kubectl("get", "crd", "aquila2trainingjobs.heurimentor.io", check=False).returncode == 0


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "operator.replicas=0"], "at '/operator/replicas': minimum: got 0, want 1"),
        (["--set", "operator.peering.standalone=true"], "at '/operator/replicas': value must be 1"),
        (["--set", "database.mode=sqlite"], "at '/database/mode': value must be one of 'bundled', 'external'"),
        (["--set", "database.mode=external"], "at '/database/external/existingSecret': minLength: got 0, want 1"),
        (["--set", "dmu.persistence.size=lots"], "at '/dmu/persistence/size': 'lots' does not match pattern"),
        (["--set", "operater.replicas=1"], "additional properties 'operater' not allowed"),
    ],
    ids=["replicas-0", "standalone-with-2-replicas", "unknown-database-mode", "external-without-secret", "bad-quantity", "typo"],
)
def test_bad_values_are_rejected_at_install_with_a_readable_message(kube, values, message):
    out = helm(kube, "install", "hm-bad", str(CHART), "-n", "default", "--dry-run=client", *values, check=False)
    assert out.returncode != 0
    assert "values don't meet the specifications of the schema" in out.stderr and message in out.stderr, out.stderr
