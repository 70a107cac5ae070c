"""Pure builders: job spec (+ the planner's decisions) in, Kubernetes manifests out. No API calls."""

from __future__ import annotations

import math
from typing import Any

import yaml

from heurimentor.contracts import worker_env as env_names
from heurimentor.contracts.images import TRAINER_GID
from heurimentor_operator.constants import (
    ANNOTATION_TEMPLATE_HASH,
    API_VERSION,
    CONFIG_FILE,
    CONFIG_MOUNT_DIR,
    KIND,
    LABEL_ATTEMPT,
    LABEL_INDEX,
    LABEL_JOB,
    LABEL_KUEUE_QUEUE,
    LABEL_MANAGED_BY,
    LABEL_POOL,
    LABEL_RDZV_HOST,
    MANAGER,
    PROMETHEUS_DIR,
    RDZV_PORT,
    WORKER_CONTAINER,
)
from heurimentor_operator.spec import JobSpec, Pool


def assign_pools(spec: JobSpec, target: int) -> dict[str, int]:
    """Replicas per pool: pools are filled in the order listed, each up to its maxReplicas."""
    assigned: dict[str, int] = {}
    remaining = target
    for pool in spec.pools:
        take = remaining if pool.max_replicas is None else min(remaining, pool.max_replicas)
        assigned[pool.name] = take
        remaining -= take
    return assigned


def labels_for(spec: JobSpec) -> dict[str, str]:
    return {LABEL_MANAGED_BY: MANAGER, LABEL_JOB: spec.name}


def selector_for(spec: JobSpec) -> str:
    """The label selector of the job's pods (status.selector, used by the scale subresource)."""
    return f"{LABEL_JOB}={spec.name},{LABEL_MANAGED_BY}={MANAGER}"


def owner_reference(spec: JobSpec) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": spec.name,
        "uid": spec.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def config_map_name(spec: JobSpec) -> str:
    return f"{spec.name}-config"


def pod_name(spec: JobSpec, pool: str, index: int) -> str:
    return f"{spec.name}-{pool}-{index}"


def rendezvous_endpoint(spec: JobSpec) -> str:
    """Pod 0 of the first pool hosts the c10d store; it is the last pod a shrink would remove."""
    return f"{spec.pools[0].name}-0.{spec.name}.{spec.namespace}.svc:{RDZV_PORT}"


DEFAULT_SHARD_ROOT = "/data/shards"

# CRD field -> heurimentor_trainer.model.ModelArgs field.
MODEL_FIELDS = {
    "dim": "dim",
    "nLayers": "n_layers",
    "nHeads": "n_heads",
    "nKVHeads": "n_kv_heads",
    "ffnHiddenDim": "ffn_hidden_dim",
    "vocabSize": "vocab_size",
    "maxSeqLen": "max_seq_len",
}


def train_steps(spec: JobSpec) -> int:
    """Optimizer steps: given directly, or from a token budget (tokens / (global batch x seq len))."""
    hp = spec.hyperparameters
    if hp.get("steps"):
        return int(hp["steps"])
    return max(1, math.ceil(int(hp["tokens"]) / (spec.global_batch_size * int(hp["seqLen"]))))


def render_training_config(spec: JobSpec, *, pool: Pool) -> dict[str, Any]:
    """The training config one pool's workers read: heurimentor_trainer.config.TrainConfig's fields, nothing else
    (the trainer rejects unknown fields).

    Only facts that a rescale leaves alone: the pool and its relative throughput, never a replica
    count or a share. The workers compute the split from what every rank states after each
    rendezvous, so the ConfigMap is not rewritten on a scale and a pod the kubelet has not
    refreshed yet still agrees with the others.
    """
    hp = spec.hyperparameters
    if "preset" in spec.model:
        preset, model = spec.model["preset"], {}
    else:
        # Every architecture field is given explicitly, so the base preset only names the family.
        preset, model = "debug", {MODEL_FIELDS[k]: v for k, v in spec.model["config"].items()}
    optim: dict[str, Any] = {}
    if hp.get("learningRate") is not None:
        optim["lr"] = float(hp["learningRate"])
    if hp.get("warmupSteps") is not None:
        optim["warmup_steps"] = int(hp["warmupSteps"])
    config: dict[str, Any] = {
        "job": spec.job_id,
        "preset": preset,
        "model": model,
        "steps": train_steps(spec),
        "global_batch": spec.global_batch_size,
        "micro_batch": int(hp.get("microBatchSize", 1)),
        "pool": pool.name,
        "relative_throughput": pool.relative_throughput,
        "optim": optim,
        "data": {
            "shard_root": spec.data.get("shardRoot", DEFAULT_SHARD_ROOT),
            "mixture": spec.data.get("mixture"),
            "dmu_url": spec.data.get("dmuUrl"),
            **({"tokenizer_id": spec.data["tokenizerId"]} if spec.data.get("tokenizerId") else {}),
        },
        "checkpoint": {"dir": spec.checkpoint["path"], "interval": int(spec.checkpoint["intervalSteps"])},
        "metrics": {"tsm_url": spec.tsm.get("url")},
    }
    if spec.metrics_port:
        # Both or neither: with a port but no shared directory only local rank 0's series are served.
        config["metrics"].update(prometheus_port=spec.metrics_port, prometheus_dir=PROMETHEUS_DIR)
    if hp.get("seqLen"):
        config["seq_len"] = int(hp["seqLen"])
    return config


# libyaml's emitter when PyYAML has it: the same text as yaml.safe_dump, a fifth of the CPU.
_YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def build_config_map(spec: JobSpec) -> dict[str, Any]:
    """One key per pool (``train-<pool>.yaml``): each pool's pods mount theirs as train.yaml.

    A function of the spec alone: the same for every replica count."""
    data = {
        f"train-{p.name}.yaml": yaml.dump(render_training_config(spec, pool=p), Dumper=_YAML_DUMPER, sort_keys=False) for p in spec.pools
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": config_map_name(spec),
            "namespace": spec.namespace,
            "labels": labels_for(spec),
            "ownerReferences": [owner_reference(spec)],
        },
        "data": data,
    }


def build_service(spec: JobSpec) -> dict[str, Any]:
    """Headless Service: stable DNS <pool>-<index>.<job> for every worker, ready or not."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "labels": labels_for(spec),
            "ownerReferences": [owner_reference(spec)],
        },
        "spec": {
            "clusterIP": "None",
            # torchrun agents must resolve the rendezvous host before it is Ready.
            "publishNotReadyAddresses": True,
            "selector": labels_for(spec),
            "ports": [{"name": "rendezvous", "port": RDZV_PORT, "targetPort": RDZV_PORT}],
        },
    }


# torchrun's c10d rendezvous after a member leaves: its peers wait for its heartbeats to expire
# (keep_alive_interval x keep_alive_max_attempt) and then last_call_timeout for late joiners before
# the smaller world starts. The defaults (5 s x 3, 30 s) cost ~50 s per scale-down; here every
# member the operator wants is a pod it created at once, so a short last call loses nothing.
RENDEZVOUS_CONF = "last_call_timeout=10,keep_alive_interval=2,keep_alive_max_attempt=3"


def _torchrun_command(spec: JobSpec) -> list[str]:
    return [
        "torchrun",
        f"--nnodes=$({env_names.PET_NNODES})",
        f"--nproc-per-node=$({env_names.PET_NPROC_PER_NODE})",
        f"--rdzv-backend=$({env_names.PET_RDZV_BACKEND})",
        f"--rdzv-endpoint=$({env_names.PET_RDZV_ENDPOINT})",
        f"--rdzv-id=$({env_names.PET_RDZV_ID})",
        f"--max-restarts=$({env_names.PET_MAX_RESTARTS})",
        f"--rdzv-conf=$({env_names.PET_RDZV_CONF})",
        "-m",
        "heurimentor_trainer.train",
        "--config",
        f"{CONFIG_MOUNT_DIR}/{CONFIG_FILE}",
        *spec.extra_args,
    ]


def build_pod(
    spec: JobSpec, pool: Pool, index: int, *, attempt: int, rollback_step: int | None = None, rollback_skip: tuple[int, int] | None = None
) -> dict[str, Any]:
    """One worker pod (one torchrun agent driving nprocPerNode ranks).

    ``rollback_step``: this attempt restarts from the checkpoint of that step (the TSM's or a
    person's rollback); the trainer reads it from HEURIMENTOR_ROLLBACK_TO_STEP, and the steps whose
    data it skips (``rollback_skip``, inclusive) from HEURIMENTOR_ROLLBACK_SKIP_STEPS.
    """
    name = pod_name(spec, pool.name, index)
    is_rdzv_host = pool.name == spec.pools[0].name and index == 0
    labels = {
        **labels_for(spec),
        LABEL_POOL: pool.name,
        LABEL_INDEX: str(index),
        LABEL_ATTEMPT: str(attempt),
        LABEL_RDZV_HOST: str(is_rdzv_host).lower(),
    }
    if spec.scheduling.get("queueName"):
        labels[LABEL_KUEUE_QUEUE] = spec.scheduling["queueName"]
    # Kubeflow's PET_* contract: torchrun reads these, so a custom command works unchanged.
    env = [
        {"name": env_names.PET_NNODES, "value": f"{spec.elastic.min_replicas}:{spec.elastic.max_replicas}"},
        {"name": env_names.PET_NPROC_PER_NODE, "value": str(spec.nproc_per_node)},
        {"name": env_names.PET_RDZV_BACKEND, "value": "c10d"},
        {"name": env_names.PET_RDZV_ENDPOINT, "value": rendezvous_endpoint(spec)},
        {"name": env_names.PET_RDZV_ID, "value": f"{spec.name}-{spec.uid[:8]}-{attempt}"},
        {"name": env_names.PET_MAX_RESTARTS, "value": str(spec.run_policy.max_restarts)},
        {"name": env_names.PET_RDZV_CONF, "value": RENDEZVOUS_CONF},
        {"name": env_names.HEURIMENTOR_JOB, "value": spec.name},
        {"name": env_names.HEURIMENTOR_NAMESPACE, "value": spec.namespace},
        {"name": env_names.HEURIMENTOR_POOL, "value": pool.name},
        {"name": env_names.HEURIMENTOR_REPLICA_INDEX, "value": str(index)},
        {"name": env_names.HEURIMENTOR_ATTEMPT, "value": str(attempt)},
        {"name": env_names.HEURIMENTOR_ACCELERATOR, "value": pool.accelerator_type or ""},
        {"name": env_names.HEURIMENTOR_POD_NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        # Trainer rank 0 annotates its own pod with its progress (heurimentor_trainer/progress.py).
        {"name": env_names.POD_NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": env_names.POD_NAMESPACE, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        # torchrun otherwise hands its rendezvous TCPStore to the workers, and a restarted worker
        # group fails in Gloo connectFullMesh ("Connection refused"): pytorch#135712.
        {"name": "TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "value": "1"},
        *([{"name": env_names.HEURIMENTOR_ROLLBACK_TO_STEP, "value": str(rollback_step)}] if rollback_step is not None else []),
        *(
            [{"name": env_names.HEURIMENTOR_ROLLBACK_SKIP_STEPS, "value": env_names.format_step_range(*rollback_skip)}]
            if rollback_step is not None and rollback_skip
            else []
        ),
        *spec.env,
    ]
    container: dict[str, Any] = {
        "name": WORKER_CONTAINER,
        "image": spec.image,
        "command": spec.command or _torchrun_command(spec),
        "env": env,
        "ports": [
            {"name": "rendezvous", "containerPort": RDZV_PORT},
            *([{"name": "metrics", "containerPort": spec.metrics_port}] if spec.metrics_port else []),
        ],
        # Quantities are strings in the Pod API ("8", "900Gi"); the CRD also accepts plain integers.
        "resources": {kind: {k: str(v) for k, v in (amounts or {}).items()} for kind, amounts in pool.resources.items()},
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_MOUNT_DIR, "readOnly": True},
            {"name": "checkpoints", "mountPath": spec.checkpoint["path"]},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
    }
    volumes_extra = []
    if spec.metrics_port:
        container["volumeMounts"].append({"name": "prometheus", "mountPath": PROMETHEUS_DIR})
        volumes_extra.append({"name": "prometheus", "emptyDir": {}})
    if spec.data.get("volume"):
        container["volumeMounts"].append({"name": "data", "mountPath": spec.data.get("shardRoot", DEFAULT_SHARD_ROOT), "readOnly": True})
        volumes_extra.append({"name": "data", **spec.data["volume"]})
    if spec.image_pull_policy:
        container["imagePullPolicy"] = spec.image_pull_policy
    checkpoint_volume = spec.checkpoint.get("volume") or {"emptyDir": {}}
    pod_spec: dict[str, Any] = {
        # The operator restarts pods itself (gang or elastic, counted against backoffLimit).
        "restartPolicy": "Never",
        "hostname": f"{pool.name}-{index}",
        "subdomain": spec.name,
        "nodeSelector": pool.node_selector,
        "tolerations": pool.tolerations,
        "containers": [container],
        "volumes": [
            {
                "name": "config",
                "configMap": {
                    "name": config_map_name(spec),
                    "items": [{"key": f"train-{pool.name}.yaml", "path": CONFIG_FILE}],
                },
            },
            {"name": "checkpoints", **checkpoint_volume},
            # NCCL and DataLoader workers need more shared memory than a container's default 64 MiB.
            {"name": "dshm", "emptyDir": {"medium": "Memory"}},
            *volumes_extra,
        ],
        # A provisioned checkpoint volume is root-owned: the trainer image's group may write it.
        # OnRootMismatch: a large volume is not re-chowned file by file at every pod start.
        "securityContext": {"fsGroup": TRAINER_GID, "fsGroupChangePolicy": "OnRootMismatch"},
    }
    if spec.service_account:
        pod_spec["serviceAccountName"] = spec.service_account
    for key, field_name in (("schedulerName", "schedulerName"), ("priorityClassName", "priorityClassName")):
        if spec.scheduling.get(key):
            pod_spec[field_name] = spec.scheduling[key]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": spec.namespace,
            "labels": labels,
            "annotations": {ANNOTATION_TEMPLATE_HASH: spec.template_hash()},
            "ownerReferences": [owner_reference(spec)],
        },
        "spec": pod_spec,
    }
