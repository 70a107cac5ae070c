"""The job spec as typed dataclasses, with the CRD's defaults applied (pure; no cluster needed).

The apiserver already defaults and validates; parsing here again keeps builders and the planner
honest when handed a raw manifest (unit tests, `heurimentor operator render`).
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from heurimentor.contracts.presets import PRESET_NAMES
from heurimentor_operator.constants import DEFAULT_IMAGE, METRICS_PORT


class SpecError(ValueError):
    """The spec cannot be turned into pods; the message names the job and the field."""


@dataclass(frozen=True)
class Pool:
    name: str
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    resources: dict[str, Any] = field(default_factory=dict)
    accelerator_type: str | None = None
    relative_throughput: float = 1.0
    max_replicas: int | None = None


@dataclass(frozen=True)
class Elastic:
    min_replicas: int
    max_replicas: int
    replicas: int
    pending_timeout_s: int = 300

    @property
    def target(self) -> int:
        return max(self.min_replicas, min(self.replicas, self.max_replicas))


@dataclass(frozen=True)
class RunPolicy:
    backoff_limit: int = 3
    max_restarts: int = 3
    restart_mode: str = "gang"
    restart_backoff_s: int = 10
    active_deadline_s: int | None = None
    ttl_after_finished_s: int | None = None
    clean_pod_policy: str = "Running"
    suspend: bool = False


@dataclass(frozen=True)
class JobSpec:
    namespace: str
    name: str
    uid: str
    generation: int
    model: dict[str, Any]
    image: str
    image_pull_policy: str | None
    command: list[str] | None
    extra_args: list[str]
    env: list[dict[str, Any]]
    nproc_per_node: int
    elastic: Elastic
    pools: list[Pool]
    data: dict[str, Any]
    tsm: dict[str, Any]
    checkpoint: dict[str, Any]
    hyperparameters: dict[str, Any]
    run_policy: RunPolicy
    scheduling: dict[str, Any]
    raw: dict[str, Any]
    metrics_port: int = METRICS_PORT  # 0: the trainer exports no Prometheus endpoint
    service_account: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def job_id(self) -> str:
        """The job's name for the TSM and in metric labels: unique across namespaces and free of
        '/', since it is a URL path segment (namespaces hold no '.', so it splits back unambiguously)."""
        return f"{self.namespace}.{self.name}"

    @property
    def auto_rollback(self) -> bool:
        return bool(self.tsm.get("url")) and bool(self.tsm.get("autoRollback"))

    @property
    def global_batch_size(self) -> int:
        return int(self.hyperparameters["globalBatchSize"])

    def template_hash(self) -> str:
        """Hash of the fields that shape a pod or its config; a change restarts the workers.

        Replicas, suspend and the restart/deadline knobs are left out: they never need new pods.
        Computed once per parsed spec (the planner and every pod built from it ask for it).
        """
        return self._template_hash

    @functools.cached_property
    def _template_hash(self) -> str:
        shaping = {k: v for k, v in self.raw.items() if k not in ("elastic", "runPolicy")}
        if "autoRollback" in (self.raw.get("tsm") or {}):  # the operator's switch, not the workers'
            shaping["tsm"] = {k: v for k, v in self.raw["tsm"].items() if k != "autoRollback"}
        shaping["elastic"] = {k: self.raw["elastic"].get(k) for k in ("minReplicas", "maxReplicas")}
        shaping["maxRestarts"] = self.run_policy.max_restarts
        digest = hashlib.sha256(json.dumps(shaping, sort_keys=True, default=str).encode()).hexdigest()
        return digest[:16]


def parse_job(body: dict[str, Any], *, default_image: str = DEFAULT_IMAGE) -> JobSpec:
    """Typed spec of an Aquila2TrainingJob body; raises SpecError naming the job and the field."""
    meta = body.get("metadata") or {}
    ref = f"{meta.get('namespace', '?')}/{meta.get('name', '?')}"
    spec = body.get("spec") or {}
    try:
        return _parse(meta, spec, default_image)
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, SpecError):
            raise
        raise SpecError(f"Aquila2TrainingJob {ref}: invalid spec: {e!r}") from e


def _parse(meta: dict[str, Any], spec: dict[str, Any], default_image: str) -> JobSpec:
    ref = f"{meta.get('namespace')}/{meta.get('name')}"
    model = dict(spec["model"])
    if ("preset" in model) == ("config" in model):
        raise SpecError(f"Aquila2TrainingJob {ref}: set exactly one of spec.model.preset or spec.model.config")
    if "preset" in model and model["preset"] not in PRESET_NAMES:
        raise SpecError(f"Aquila2TrainingJob {ref}: unknown model preset {model['preset']!r}; known: {', '.join(PRESET_NAMES)}")
    el = spec["elastic"]
    elastic = Elastic(
        min_replicas=int(el.get("minReplicas", 1)),
        max_replicas=int(el["maxReplicas"]),
        replicas=int(el["replicas"]),
        pending_timeout_s=int(el.get("pendingTimeoutSeconds", 300)),
    )
    if elastic.min_replicas > elastic.max_replicas:
        raise SpecError(f"Aquila2TrainingJob {ref}: elastic.minReplicas {elastic.min_replicas} exceeds maxReplicas {elastic.max_replicas}")
    pools = [
        Pool(
            name=p["name"],
            node_selector=dict(p.get("nodeSelector") or {}),
            tolerations=list(p.get("tolerations") or []),
            resources=dict(p.get("resources") or {}),
            accelerator_type=p.get("acceleratorType"),
            relative_throughput=float(p.get("relativeThroughput", 1.0)),
            max_replicas=p.get("maxReplicas"),
        )
        for p in spec["pools"]
    ]
    if not pools:
        raise SpecError(f"Aquila2TrainingJob {ref}: spec.pools needs at least one pool")
    hp = dict(spec["hyperparameters"])
    if int(hp.get("globalBatchSize", 0)) <= 0:
        raise SpecError(f"Aquila2TrainingJob {ref}: hyperparameters.globalBatchSize must be positive")
    rp = spec.get("runPolicy") or {}
    run_policy = RunPolicy(
        backoff_limit=int(rp.get("backoffLimit", 3)),
        max_restarts=int(rp.get("maxRestarts", 3)),
        restart_mode=rp.get("restartMode", "gang"),
        restart_backoff_s=int(rp.get("restartBackoffSeconds", 10)),
        active_deadline_s=rp.get("activeDeadlineSeconds"),
        ttl_after_finished_s=rp.get("ttlSecondsAfterFinished"),
        clean_pod_policy=rp.get("cleanPodPolicy", "Running"),
        suspend=bool(rp.get("suspend", False)),
    )
    checkpoint = {"path": "/checkpoints", "intervalSteps": 500, **(spec.get("checkpoint") or {})}
    return JobSpec(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta.get("uid", ""),
        generation=int(meta.get("generation", 0)),
        model=model,
        image=spec.get("image") or default_image,
        image_pull_policy=spec.get("imagePullPolicy"),
        command=list(spec["command"]) if spec.get("command") else None,
        extra_args=list(spec.get("extraArgs") or []),
        env=list(spec.get("env") or []),
        nproc_per_node=int(spec.get("nprocPerNode", 8)),
        elastic=elastic,
        pools=pools,
        data=dict(spec.get("data") or {}),
        tsm=dict(spec.get("tsm") or {}),
        checkpoint=checkpoint,
        hyperparameters=hp,
        run_policy=run_policy,
        scheduling=dict(spec.get("scheduling") or {}),
        raw=spec,
        metrics_port=int((spec.get("metrics") or {}).get("prometheusPort", METRICS_PORT)),
        service_account=spec.get("serviceAccountName"),
    )
