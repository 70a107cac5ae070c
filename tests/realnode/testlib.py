"""What the real-node tests share: a small CPU training job of the trainer image, and reading the
trainer's sample log (one JSON line per step and rank) from the volume the job's pods share."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from hack.testenv.realnode import archive_image_name, image_archives
from heurimentor_operator.constants import API_VERSION, KIND
from heurimentor_trainer.data import MixtureSampler, SourceSet
from heurimentor_trainer.presets import get_preset
from tests.operator.testlib import bind_chart_worker_role
from tests.trainer.testlib import consumed_samples, make_sources

TINY_DEMO = Path(__file__).resolve().parents[2] / "deploy" / "tiny-demo.yaml"
CHECKPOINTS = "/checkpoints"
SAMPLE_LOG_ENV = {"name": "HEURIMENTOR_TRAIN__DATA__SAMPLE_LOG_DIR", "value": f"{CHECKPOINTS}/samples"}


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


def elastic_job(
    name: str, namespace: str, kube, tmp_path: Path, *, steps: int, global_batch: int, interval: int, seq_len: int = 32, **spec: Any
) -> tuple[dict[str, Any], Path, Path]:
    """A 2-worker elastic job (1..2) of the trainer image whose pods share one checkpoint folder of
    this machine, where the trainer also writes its sample log. Returns (job, shards, sample log folder)."""
    shards = make_shards(tmp_path / "shards")
    shared = tmp_path / "checkpoints"
    shared.mkdir()
    shared.chmod(0o777)  # the trainer image runs as its own non-root user
    job = cpu_training_job(
        name,
        namespace,
        image=archive_image_name(image_archives(["trainer"])[0]),
        service_account=worker_service_account(kube, namespace),
        shards=shards,
        hyperparameters={"learningRate": 1.0e-3, "globalBatchSize": global_batch, "seqLen": seq_len, "steps": steps},
        imagePullPolicy="IfNotPresent",
        elastic={"minReplicas": 1, "maxReplicas": 2, "replicas": 2, "pendingTimeoutSeconds": 120},
        checkpoint={"path": CHECKPOINTS, "intervalSteps": interval, "volume": {"hostPath": {"path": str(shared), "type": "Directory"}}},
        env=[SAMPLE_LOG_ENV],
        **spec,
    )
    return job, shards, shared / "samples"


def tiny_demo() -> dict[str, dict[str, Any]]:
    """deploy/tiny-demo.yaml's documents by kind: its checkpoint claim and its job."""
    return {d["kind"]: d for d in yaml.safe_load_all(TINY_DEMO.read_text()) if d}


def make_shards(root: Path) -> Path:
    return make_sources(root, names=("en", "zh"), docs=40, shards=2)


def training_runs(samples: Path) -> dict[int, dict]:
    """run id (one per launch of the workers) -> its ranks, the steps it trained in the order written,
    and the rows each rank trained per step."""
    runs: dict[int, dict] = {}
    for path in sorted(samples.glob("rank*.jsonl")) if samples.exists() else ():
        for line in path.read_text().splitlines():
            if not line.endswith("}"):
                continue  # the line a killed worker was writing
            record = json.loads(line)
            run = runs.setdefault(record["run"], {"ranks": set(), "steps": [], "rows": len(record["ids"])})
            run["ranks"].add(record["rank"])
            run["steps"].append(record["step"])
    return dict(sorted(runs.items()))


def last_step(samples: Path) -> int:
    return max((s for run in training_runs(samples).values() for s in run["steps"]), default=0)


def planned_stream(shards: Path, *, steps: int, global_batch: int, seq_len: int) -> list[str]:
    """The sample ids the trainer's sampler plans for the whole job (seed 0, equal weights: the job's defaults)."""
    sources = SourceSet(shards, seq_len, vocab_size=get_preset("debug").model.vocab_size)
    sampler = MixtureSampler(sources.names, sources.train_sizes, seed=0, weights={n: 1.0 for n in sources.names})
    return [f"{sources.names[s]}:{i}" for s, i in sampler.plan(global_batch * steps)]


def assert_stream_exact(samples: Path, planned: list[str], steps: int) -> None:
    """Every step in the log once (its latest run), and together exactly the planned stream."""
    consumed = consumed_samples(samples)
    assert sorted(consumed) == list(range(1, steps + 1)), "a step is missing from the sample log"
    assert [i for step in sorted(consumed) for i in consumed[step]] == planned, "a sample was repeated or skipped"


def worker_service_account(kube, namespace: str) -> str:
    """The chart's worker ClusterRole bound to a ServiceAccount, as `worker.namespaces` would."""
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "heurimentor-worker", "namespace": namespace}}
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(account))
    bind_chart_worker_role(kube, namespace, {"kind": "ServiceAccount", "name": "heurimentor-worker", "namespace": namespace})
    return "heurimentor-worker"
