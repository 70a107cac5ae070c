"""Job manifests for the operator tests (plain dicts; each test tweaks a copy)."""

from __future__ import annotations

import copy
from typing import Any

from heurimentor_operator.constants import API_VERSION, KIND

GPU_POOLS = [
    {
        "name": "a100",
        "acceleratorType": "nvidia-a100",
        "nodeSelector": {"heurimentor.io/accelerator": "nvidia-a100"},
        "resources": {"limits": {"nvidia.com/gpu": 8}},
        "relativeThroughput": 1.0,
        "maxReplicas": 1,
    },
    {
        "name": "h800",
        "acceleratorType": "nvidia-h800",
        "nodeSelector": {"heurimentor.io/accelerator": "nvidia-h800"},
        "resources": {"limits": {"nvidia.com/gpu": 8}},
        "relativeThroughput": 2.0,
    },
]


def job(name: str = "job-a", namespace: str = "ns", **spec_overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {"preset": "debug"},
        "image": "trainer:test",
        "nprocPerNode": 8,
        "elastic": {"minReplicas": 1, "maxReplicas": 4, "replicas": 2, "pendingTimeoutSeconds": 5},
        "pools": copy.deepcopy(GPU_POOLS),
        "data": {"dmuUrl": "http://dmu:8000", "mixture": "pretrain"},
        "tsm": {"url": "http://tsm:8000"},
        "checkpoint": {"path": "/ckpt", "intervalSteps": 10},
        "hyperparameters": {"learningRate": 1e-3, "globalBatchSize": 96, "steps": 100},
        "runPolicy": {"backoffLimit": 2, "restartBackoffSeconds": 1},
    }
    for key, value in spec_overrides.items():
        if key != "model" and isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "uid": "0123456789abcdef", "generation": 1, "resourceVersion": "1"},
        "spec": spec,
    }
