"""KWOK configuration: fake nodes (GPU pools with accelerator labels) and the pod lifecycle stages tests rely on.

Pods bound to a fake node become Running+Ready. A pod annotated `kwok.heurimentor.io/exit-code` then
terminates: "0" -> Succeeded, any other integer N -> Failed with exit code N on every container
(tests simulate worker exits by setting or patching the annotation). Deleted pods go away at once.
"""

from __future__ import annotations

from typing import Any

import yaml

FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
EXIT_CODE_ANNOTATION = "kwok.heurimentor.io/exit-code"
ACCELERATOR_LABEL = "heurimentor.io/accelerator"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_RESOURCE = "nvidia.com/gpu"

# heurimentor.io/accelerator value -> the product label NVIDIA's GPU feature discovery would set.
GPU_PRODUCTS = {
    "nvidia-a100": "NVIDIA-A100-SXM4-80GB",
    "nvidia-h800": "NVIDIA-H800",
    "nvidia-h100": "NVIDIA-H100-80GB-HBM3",
}

_EXIT = f'.metadata.annotations["{EXIT_CODE_ANNOTATION}"]'

_NODE_INITIALIZE = """
conditions:
{{ range NodeConditions }}
- lastHeartbeatTime: {{ Now | Quote }}
  lastTransitionTime: {{ or $.metadata.creationTimestamp Now | Quote }}
  message: {{ .message | Quote }}
  reason: {{ .reason | Quote }}
  status: {{ .status | Quote }}
  type: {{ .type | Quote }}
{{ end }}
addresses:
{{ with NodeIP }}
- address: {{ . | Quote }}
  type: InternalIP
{{ end }}
{{ with NodeName }}
- address: {{ . | Quote }}
  type: Hostname
{{ end }}
allocatable:
{{ YAML .status.capacity 1 }}
capacity:
{{ YAML .status.capacity 1 }}
nodeInfo:
  architecture: amd64
  containerRuntimeVersion: {{ printf "kwok-%s" Version }}
  kernelVersion: {{ printf "kwok-%s" Version }}
  kubeProxyVersion: {{ printf "kwok-%s" Version }}
  kubeletVersion: {{ printf "kwok-%s" Version }}
  operatingSystem: linux
phase: Running
"""

_NODE_HEARTBEAT = """
conditions:
{{ range NodeConditions }}
- lastHeartbeatTime: {{ Now | Quote }}
  lastTransitionTime: {{ or $.metadata.creationTimestamp Now | Quote }}
  message: {{ .message | Quote }}
  reason: {{ .reason | Quote }}
  status: {{ .status | Quote }}
  type: {{ .type | Quote }}
{{ end }}
"""

_POD_READY = """
conditions:
- {lastTransitionTime: {{ Now | Quote }}, status: "True", type: Initialized}
- {lastTransitionTime: {{ Now | Quote }}, status: "True", type: Ready}
- {lastTransitionTime: {{ Now | Quote }}, status: "True", type: ContainersReady}
{{ range .spec.readinessGates }}
- {lastTransitionTime: {{ Now | Quote }}, status: "True", type: {{ .conditionType | Quote }}}
{{ end }}
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: true
  restartCount: 0
  started: true
  state:
    running:
      startedAt: {{ Now | Quote }}
{{ end }}
initContainerStatuses:
{{ range .spec.initContainers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: true
  restartCount: 0
  state:
    terminated: {exitCode: 0, reason: Completed, startedAt: {{ Now | Quote }}, finishedAt: {{ Now | Quote }}}
{{ end }}
{{ with NodeIPsWith .spec.nodeName }}
hostIP: {{ index . 0 | Quote }}
{{ end }}
{{ with PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
podIP: {{ index . 0 | Quote }}
podIPs:
{{ range . }}
- ip: {{ . | Quote }}
{{ end }}
{{ end }}
phase: Running
startTime: {{ Now | Quote }}
"""


def _pod_exit(phase: str, reason: str) -> str:
    return (
        "conditions:\n"
        '- {lastTransitionTime: {{ Now | Quote }}, status: "False", type: Ready}\n'
        '- {lastTransitionTime: {{ Now | Quote }}, status: "False", type: ContainersReady}\n'
        "containerStatuses:\n"
        '{{ $code := index .metadata.annotations "' + EXIT_CODE_ANNOTATION + '" }}\n'
        "{{ range .spec.containers }}\n"
        "- image: {{ .image | Quote }}\n"
        "  name: {{ .name | Quote }}\n"
        "  ready: false\n"
        "  restartCount: 0\n"
        "  started: false\n"
        "  state:\n"
        "    terminated:\n"
        "      exitCode: {{ $code }}\n"
        f"      reason: {reason}\n"
        "      startedAt: {{ Now | Quote }}\n"
        "      finishedAt: {{ Now | Quote }}\n"
        "{{ end }}\n"
        f"phase: {phase}\n"
    )


def _stage(name: str, kind: str, expressions: list[dict[str, Any]], next_: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": kind},
            "selector": {"matchExpressions": expressions},
            "next": next_,
        },
    }


def _expr(key: str, operator: str, *values: str) -> dict[str, Any]:
    return {"key": key, "operator": operator, **({"values": list(values)} if values else {})}


def stages() -> list[dict[str, Any]]:
    ready = '.status.conditions.[] | select( .type == "Ready" ) | .status'
    alive = _expr(".metadata.deletionTimestamp", "DoesNotExist")
    node_heartbeat = _stage(
        "node-heartbeat-with-lease",
        "Node",
        [_expr(".status.phase", "In", "Running"), _expr(ready, "In", "True")],
        {"statusTemplate": _NODE_HEARTBEAT},
    )
    node_heartbeat["spec"]["delay"] = {"durationMilliseconds": 20000, "jitterDurationMilliseconds": 25000}
    return [
        _stage("node-initialize", "Node", [_expr(ready, "NotIn", "True")], {"statusTemplate": _NODE_INITIALIZE}),
        node_heartbeat,
        _stage(
            "pod-ready",
            "Pod",
            [alive, _expr(".status.phase", "In", "Pending"), _expr(ready, "NotIn", "True")],
            {"statusTemplate": _POD_READY},
        ),
        _stage(
            "pod-exit-succeeded",
            "Pod",
            [alive, _expr(".status.phase", "In", "Running"), _expr(_EXIT, "In", "0")],
            {"statusTemplate": _pod_exit("Succeeded", "Completed")},
        ),
        _stage(
            "pod-exit-failed",
            "Pod",
            [alive, _expr(".status.phase", "In", "Running"), _expr(_EXIT, "Exists"), _expr(_EXIT, "NotIn", "0")],
            {"statusTemplate": _pod_exit("Failed", "Error")},
        ),
        _stage("pod-delete", "Pod", [_expr(".metadata.deletionTimestamp", "Exists")], {"delete": True}),
    ]


def config_yaml() -> str:
    """kwok's --config file: the Stage documents. (Options go on the command line: a KwokConfiguration
    document in this file replaces kwok's defaults instead of merging with them.)"""
    return yaml.safe_dump_all(stages(), sort_keys=False)


def node_manifest(
    name: str,
    *,
    accelerator: str | None = None,
    gpus: int = 0,
    labels: dict[str, str] | None = None,
    cpu: str = "96",
    memory: str = "1Ti",
    pods: str = "110",
) -> dict[str, Any]:
    """A Node object that KWOK manages (annotation kwok.x-k8s.io/node=fake), with GPU capacity if asked."""
    node_labels = {
        "type": "kwok",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": f"kwok-{accelerator or 'cpu'}",
    }
    if accelerator:
        node_labels[ACCELERATOR_LABEL] = accelerator
        if accelerator in GPU_PRODUCTS:
            node_labels[GPU_PRODUCT_LABEL] = GPU_PRODUCTS[accelerator]
    if gpus:
        node_labels["nvidia.com/gpu.count"] = str(gpus)
    node_labels.update(labels or {})
    capacity = {"cpu": cpu, "memory": memory, "pods": pods}
    if gpus:
        capacity[GPU_RESOURCE] = str(gpus)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": node_labels, "annotations": {FAKE_NODE_ANNOTATION: "fake"}},
        "spec": {},
        "status": {"capacity": capacity, "allocatable": capacity},
    }
