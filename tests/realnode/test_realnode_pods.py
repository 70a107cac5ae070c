"""Pods on the real node: real containers from `make images`, logs and exec through the kubelet's
x509 + Webhook authorization, the `kubernetes` Service and the cluster DNS from inside a pod, and
no registry anywhere (a missing image fails at once)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from hack.testenv.realnode import NODE_IP, NODE_NAME, archive_image_name, image_archives
from tests.operator.testlib import wait_for


def _pod(name: str, image: str, script: str, **spec) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", "image": image, "imagePullPolicy": "IfNotPresent", "command": ["python3", "-c", script]}],
                **spec,
            },
        }
    )


def _phase(kube, namespace: str, name: str) -> str:
    out = kube.kubectl("get", "pod", name, "-n", namespace, "-o", "jsonpath={.status.phase}", check=False)
    return out.stdout.strip()


def test_the_node_is_ready_with_the_pinned_kubelet_and_containerd(real_node):
    # The kubelet posts the runtime's version a moment after Ready (`containerd://Unknown` before).
    def node_with_runtime_version():
        node = json.loads(real_node.kubectl("get", "node", NODE_NAME, "-o", "json").stdout)
        return node if node["status"]["nodeInfo"]["containerRuntimeVersion"] != "containerd://Unknown" else None

    node = wait_for("the runtime version on the Node", node_with_runtime_version, timeout=30, interval=0.5)
    info = node["status"]["nodeInfo"]
    assert info["kubeletVersion"] == "v1.36.3"
    assert info["containerRuntimeVersion"] == "containerd://2.4.2"
    assert {"type": "InternalIP", "address": NODE_IP} in node["status"]["addresses"]
    conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert conditions["Ready"] == "True"
    # The kubelet refuses a client without a certificate the cluster's CA signed (no anonymous reads).
    anonymous = real_node.in_namespaces("curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", f"https://{NODE_IP}:10250/pods")
    assert anonymous.stdout == "401"


def test_a_pod_runs_in_a_real_container_with_logs_and_exec(real_node, namespace):
    image = archive_image_name(image_archives(["operator"])[0])
    created = time.monotonic()
    real_node.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=_pod("hello", image, "import time; print('hello from a container', flush=True); time.sleep(600)"),
    )
    wait_for("pod hello Running", lambda: _phase(real_node, namespace, "hello") == "Running", timeout=60, interval=0.1)
    print(f"pod create -> Running: {time.monotonic() - created:.2f}s")
    logs = wait_for("hello's log", lambda: real_node.kubectl("logs", "hello", "-n", namespace).stdout, timeout=20)
    assert logs.strip() == "hello from a container"
    # exec goes apiserver -> kubelet (the apiserver's kubelet client certificate) -> containerd.
    hostname = real_node.kubectl("exec", "hello", "-n", namespace, "--", "cat", "/etc/hostname").stdout
    assert hostname.strip() == "hello"
    # A real container: its own PID namespace (the script is PID 1) and the image's user.
    status = real_node.kubectl("exec", "hello", "-n", namespace, "--", "python3", "-c", "import os; print(os.getpid(), os.getuid())").stdout
    pid, uid = status.split()
    assert uid == "10001" and int(pid) > 1
    real_node.kubectl("delete", "pod", "hello", "-n", namespace, "--wait=true", "--timeout=60s")


def test_a_pod_reaches_the_apiserver_through_the_kubernetes_service_by_dns_name(real_node, namespace):
    image = archive_image_name(image_archives(["operator"])[0])
    script = (
        "import json, ssl, urllib.request\n"
        "sa = '/var/run/secrets/kubernetes.io/serviceaccount'\n"
        "ctx = ssl.create_default_context(cafile=sa + '/ca.crt')\n"
        "req = urllib.request.Request('https://kubernetes.default.svc/version', headers={'Authorization': 'Bearer ' + open(sa + '/token').read()})\n"
        "print(json.load(urllib.request.urlopen(req, context=ctx, timeout=10))['gitVersion'])\n"
    )
    real_node.kubectl("apply", "-n", namespace, "-f", "-", input=_pod("api", image, script))
    phase = wait_for(
        "pod api finished",
        lambda: _phase(real_node, namespace, "api") in ("Succeeded", "Failed") and _phase(real_node, namespace, "api"),
        timeout=90,
    )
    logs = real_node.kubectl("logs", "api", "-n", namespace).stdout
    assert phase == "Succeeded", logs
    assert logs.strip() == "v1.36.3"


def test_an_image_that_is_not_on_the_node_fails_at_once_and_nothing_is_pulled(real_node, namespace):
    real_node.kubectl("apply", "-n", namespace, "-f", "-", input=_pod("absent", "registry.example.com/nothing:1", "pass"))

    def pull_failure() -> str | None:
        pod = json.loads(real_node.kubectl("get", "pod", "absent", "-n", namespace, "-o", "json").stdout)
        for status in pod.get("status", {}).get("containerStatuses", []):
            reason = status.get("state", {}).get("waiting", {}).get("reason")
            if reason in ("ErrImagePull", "ImagePullBackOff"):
                return status["state"]["waiting"].get("message", "")
        return None

    message = wait_for("the pull to fail", pull_failure, timeout=30)
    # hosts.toml sends every registry to the dead loopback port: the pull never left the node.
    assert "127.0.0.1:9" in message, message


def test_a_claim_of_the_default_class_gets_a_volume_of_its_own_that_goes_with_it(real_node, namespace):
    """The node's storage (hack/testenv/hostpath_provisioner.py): what the chart's and tiny-demo's claims bind."""
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "scratch"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},  # no class: the default
    }
    real_node.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(claim))

    def bound_volume() -> str | None:
        pvc = json.loads(real_node.kubectl("get", "pvc", "scratch", "-n", namespace, "-o", "json").stdout)
        return pvc["spec"].get("volumeName") if pvc.get("status", {}).get("phase") == "Bound" else None

    volume_name = wait_for("the claim Bound", bound_volume, timeout=30, interval=0.2)
    volume = json.loads(real_node.kubectl("get", "pv", volume_name, "-o", "json").stdout)
    assert volume["spec"]["storageClassName"] == "hostpath" and volume["spec"]["claimRef"]["name"] == "scratch"
    folder = Path(volume["spec"]["hostPath"]["path"])
    assert folder.parent == real_node.state_dir / "volumes"
    # A pod of a non-root image writes to it.
    image = archive_image_name(image_archives(["operator"])[0])
    script = "open('/data/written', 'w').write('by the pod')"
    real_node.kubectl(
        "apply", "-n", namespace, "-f", "-",
        input=_pod("writer", image, script, volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "scratch"}}],
                   containers=[{"name": "main", "image": image, "imagePullPolicy": "IfNotPresent", "command": ["python3", "-c", script],
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]),
    )  # fmt: skip
    wait_for("pod writer finished", lambda: _phase(real_node, namespace, "writer") in ("Succeeded", "Failed"), timeout=60)
    assert _phase(real_node, namespace, "writer") == "Succeeded", real_node.kubectl("logs", "writer", "-n", namespace, check=False).stdout
    assert (folder / "written").read_text() == "by the pod"
    # Deleting the claim (after its pod) removes the volume and its folder.
    real_node.kubectl("delete", "pod", "writer", "-n", namespace, "--wait=true", "--timeout=60s")
    real_node.kubectl("delete", "pvc", "scratch", "-n", namespace, "--wait=true", "--timeout=60s")
    wait_for("the volume gone", lambda: real_node.kubectl("get", "pv", volume_name, check=False).returncode != 0, timeout=60, interval=0.5)
    assert not folder.exists()
