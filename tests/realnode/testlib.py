"""What the real-node tests share: a small CPU training job of the trainer image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from heurimentor_operator.constants import API_VERSION, KIND


def cpu_training_job(
    name: str, namespace: str, *, image: str, service_account: str, shards: Path, hyperparameters: dict[str, Any], **spec: Any
) -> dict[str, Any]:
    """An Aquila2TrainingJob of the debug preset, one process per pod on the node's CPU, reading ``shards``
    through a hostPath volume (the node is this machine); ``spec`` adds or replaces top-level fields."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"preset": "debug"},
            "image": image,
            "serviceAccountName": service_account,
            "nprocPerNode": 1,
            "pools": [{"name": "cpu", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "3Gi"}}}],
            "data": {"volume": {"hostPath": {"path": str(shards), "type": "Directory"}}},
            "hyperparameters": {"seqLen": 32, **hyperparameters},
            **spec,
        },
    }
