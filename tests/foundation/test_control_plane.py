"""Proof that the control plane in the `kube` fixture is real Kubernetes, not a stand-in:
apiserver validation and RBAC, controller-manager garbage collection, scheduler + KWOK placement."""

from __future__ import annotations

import itertools
import json
import subprocess
import time

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

_ns_counter = itertools.count()

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.foundation.heurimentor.io"},
    "spec": {
        "group": "foundation.heurimentor.io",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["replicas"],
                                "properties": {
                                    "replicas": {"type": "integer", "minimum": 1},
                                    "accelerator": {"type": "string", "enum": ["nvidia-a100", "nvidia-h800"]},
                                },
                            }
                        },
                    }
                },
            }
        ],
    },
}


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture
def namespace(kube):
    name = kube.create_namespace(f"foundation-{next(_ns_counter)}-{int(time.time()) % 100000}")
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false")


def widget(name: str, **spec) -> str:
    return yaml.safe_dump({"apiVersion": "foundation.heurimentor.io/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec})


def test_server_reports_the_pinned_kubernetes_version(kube):
    version = json.loads(kube.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == "v1.36.3"
    assert (version["serverVersion"]["major"], version["serverVersion"]["minor"]) == ("1", "36")


def test_crd_applied_with_kubectl_is_served_and_validates(kube, namespace):
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(CRD))
    kube.kubectl("wait", "--for=condition=Established", "crd/widgets.foundation.heurimentor.io", "--timeout=60s")

    kube.kubectl("apply", "-n", namespace, "-f", "-", input=widget("good", replicas=2, accelerator="nvidia-a100"))
    stored = json.loads(kube.kubectl("get", "widget", "good", "-n", namespace, "-o", "json").stdout)
    assert stored["spec"] == {"replicas": 2, "accelerator": "nvidia-a100"}

    bad = kube.kubectl("apply", "-n", namespace, "-f", "-", check=False, input=widget("bad", replicas=0, accelerator="tpu-v5"))
    assert bad.returncode != 0
    assert 'The Widget "bad" is invalid' in bad.stderr
    assert "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1" in bad.stderr
    assert 'spec.accelerator: Unsupported value: "tpu-v5"' in bad.stderr
    assert kube.kubectl("get", "widget", "bad", "-n", namespace, check=False).returncode != 0
    # The good object is untouched by the rejected write.
    again = json.loads(kube.kubectl("get", "widget", "good", "-n", namespace, "-o", "json").stdout)
    assert again["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]


def test_client_certificate_user_is_forbidden_until_a_role_is_bound(kube, namespace):
    user_config = kube.user_kubeconfig("alice", groups=["ml-researchers"])
    denied = kube.kubectl("get", "pods", "-n", namespace, check=False, kubeconfig=user_config)
    assert denied.returncode != 0
    assert f'User "alice" cannot list resource "pods" in API group "" in the namespace "{namespace}"' in denied.stderr

    core = client.CoreV1Api(kube.api_client(user_config))
    with pytest.raises(ApiException) as forbidden:
        core.list_namespaced_pod(namespace)
    assert forbidden.value.status == 403

    kube.kubectl("create", "role", "pod-reader", "--verb=get,list,watch", "--resource=pods", "-n", namespace)
    kube.kubectl("create", "rolebinding", "researchers-read-pods", "--role=pod-reader", "--group=ml-researchers", "-n", namespace)
    wait_until(
        lambda: kube.kubectl("get", "pods", "-n", namespace, check=False, kubeconfig=user_config).returncode == 0,
        15,
        "the RoleBinding to take effect",
    )
    assert core.list_namespaced_pod(namespace).items == []
    # Bound for pods in this namespace only: still forbidden elsewhere and for other verbs.
    assert kube.kubectl("get", "pods", "-n", "default", check=False, kubeconfig=user_config).returncode != 0
    assert kube.kubectl("auth", "can-i", "delete", "pods", "-n", namespace, check=False, kubeconfig=user_config).stdout.strip() == "no"


def test_dependents_are_garbage_collected_after_owner_deletion(kube, namespace):
    core = client.CoreV1Api(kube.api_client())
    owner = core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="job")))
    reference = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="job", uid=owner.metadata.uid)
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="job-worker-config", owner_references=[reference]))
    )
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="unowned")))

    core.delete_namespaced_config_map("job", namespace, propagation_policy="Background")

    def dependent_gone() -> bool:
        names = {cm.metadata.name for cm in core.list_namespaced_config_map(namespace).items}
        return "job-worker-config" not in names

    wait_until(dependent_gone, 90, "the garbage collector to delete job-worker-config")
    assert core.read_namespaced_config_map("unowned", namespace).metadata.name == "unowned"


def gpu_pod(name: str, accelerator: str, gpus: int, annotations: dict | None = None) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": {
                "nodeSelector": {"heurimentor.io/accelerator": accelerator},
                "containers": [
                    {"name": "trainer", "image": "heurimentor/trainer:test", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}
                ],
            },
        }
    )


def get_pod(kube, namespace: str, name: str) -> dict:
    return json.loads(kube.kubectl("get", "pod", name, "-n", namespace, "-o", "json").stdout)


def test_gpu_pod_is_scheduled_onto_matching_kwok_node_and_runs(kube, namespace):
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=gpu_pod("trainer-0", "nvidia-h800", 8))
    pod = wait_until(
        lambda: (p := get_pod(kube, namespace, "trainer-0"))["status"].get("phase") == "Running" and p, 60, "trainer-0 to be Running"
    )
    assert pod["spec"]["nodeName"] == "kwok-gpu-h800-0"
    assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"] == "True"
    assert pod["status"]["podIP"].startswith("10.244.")

    # The H800 node's 8 GPUs are taken: another 8-GPU pod for it stays Pending, with the scheduler's reason.
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=gpu_pod("trainer-1", "nvidia-h800", 8))
    events = wait_until(
        lambda: kube.kubectl(
            "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=trainer-1,reason=FailedScheduling", "-o", "json"
        ).stdout.count("Insufficient nvidia.com/gpu"),
        60,
        "a FailedScheduling event for trainer-1",
    )
    assert events >= 1
    pending = get_pod(kube, namespace, "trainer-1")
    assert pending["status"]["phase"] == "Pending" and not pending["spec"].get("nodeName")


@pytest.mark.parametrize(("exit_code", "phase"), [("0", "Succeeded"), ("137", "Failed")])
def test_exit_code_annotation_finishes_the_pod(kube, namespace, exit_code, phase):
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=gpu_pod("worker", "nvidia-a100", 1))
    wait_until(lambda: get_pod(kube, namespace, "worker")["status"].get("phase") == "Running", 60, "worker Running")
    kube.kubectl("annotate", "pod", "worker", "-n", namespace, f"kwok.heurimentor.io/exit-code={exit_code}")
    pod = wait_until(lambda: (p := get_pod(kube, namespace, "worker"))["status"].get("phase") == phase and p, 30, f"worker {phase}")
    state = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert state["exitCode"] == int(exit_code)


def test_add_kwok_nodes_creates_ready_gpu_nodes(kube):
    names = kube.add_kwok_nodes(2, "kwok-gpu-h100", accelerator="nvidia-h100", gpus=4, labels={"pool": "burst"})
    assert names == ["kwok-gpu-h100-0", "kwok-gpu-h100-1"]
    nodes = json.loads(kube.kubectl("get", "nodes", "-l", "pool=burst", "-o", "json").stdout)["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == names
    for node in nodes:
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "4"
        assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    kube.kubectl("delete", "nodes", *names)


def test_default_nodes_and_helm_against_the_cluster(kube, tmp_path):
    nodes = json.loads(kube.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    by_name = {n["metadata"]["name"]: n for n in nodes}
    a100 = by_name["kwok-gpu-a100-0"]
    assert a100["metadata"]["labels"]["heurimentor.io/accelerator"] == "nvidia-a100"
    assert a100["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB"
    assert a100["status"]["capacity"]["nvidia.com/gpu"] == "8"
    assert by_name["kwok-gpu-h800-0"]["metadata"]["labels"]["heurimentor.io/accelerator"] == "nvidia-h800"
    assert "nvidia.com/gpu" not in by_name["kwok-cpu-0"]["status"]["capacity"]

    # helm's kubeVersion check sees the stamped server version (an unstamped v0.0.0 would fail it).
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\nkubeVersion: '>=1.36.0-0'\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\ndata:\n  kube: {{ .Capabilities.KubeVersion.Version | quote }}\n"
    )
    subprocess.run(
        ["helm", "install", "probe", str(chart), "-n", "default", "--wait", "--timeout", "60s"],
        env=kube.env,
        check=True,
        capture_output=True,
        text=True,
    )
    try:
        data = json.loads(kube.kubectl("get", "configmap", "probe", "-n", "default", "-o", "json").stdout)["data"]
        assert data["kube"] == "v1.36.3"
    finally:
        subprocess.run(["helm", "uninstall", "probe", "-n", "default"], env=kube.env, check=True, capture_output=True)
