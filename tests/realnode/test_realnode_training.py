"""The operator on the real node: an Aquila2TrainingJob becomes worker pods of the trainer image,
torchrun trains real CPU steps in real containers (two workers, rendezvous by the pods' DNS
names), rank 0 reports progress by annotating its pod, and `kubectl get a2j` shows it."""

from __future__ import annotations

import json
import math
import time

import yaml

from hack.testenv.realnode import archive_image_name, image_archives, published_image_name
from heurimentor_operator.constants import KIND
from tests.operator.testlib import running_operator, wait_for
from tests.realnode.testlib import cpu_training_job, tiny_demo, worker_service_account
from tests.trainer.testlib import make_sources

STEPS = 24


def test_the_operator_trains_a_job_in_real_containers(real_node, namespace, operator_kubeconfig, tmp_path):
    shards = make_sources(tmp_path / "shards", names=("en", "zh"), docs=40, shards=2)
    # The name deploy/tiny-demo.yaml gives the trainer image: the node has it without a registry.
    image = tiny_demo()[KIND]["spec"]["image"]
    assert image == published_image_name(archive_image_name(image_archives(["trainer"])[0]))
    job = cpu_training_job(
        "tiny",
        namespace,
        image=image,
        service_account=worker_service_account(real_node, namespace),
        shards=shards,
        hyperparameters={"learningRate": 1.0e-3, "globalBatchSize": 4, "steps": STEPS},
        imagePullPolicy="IfNotPresent",
        elastic={"minReplicas": 1, "maxReplicas": 2, "replicas": 2, "pendingTimeoutSeconds": 120},
        checkpoint={"intervalSteps": 8},
        runPolicy={"backoffLimit": 1, "restartBackoffSeconds": 2},
    )
    with running_operator(operator_kubeconfig):
        created = time.monotonic()
        real_node.kubectl("apply", "-f", "-", input=yaml.safe_dump(job))

        def status() -> dict:
            return json.loads(real_node.kubectl("get", "a2j", "tiny", "-n", namespace, "-o", "json").stdout).get("status", {})

        def running_pods() -> int:
            pods = json.loads(real_node.kubectl("get", "pods", "-n", namespace, "-l", "heurimentor.io/job=tiny", "-o", "json").stdout)[
                "items"
            ]
            return sum(p["status"].get("phase") == "Running" for p in pods)

        wait_for("two Running worker pods", lambda: running_pods() == 2, timeout=120, interval=0.2)
        figures = {"job create -> 2 workers Running": time.monotonic() - created}
        # Progress comes from the trainer itself (rank 0 annotates its pod, the operator folds it in).
        mid = wait_for("a reported step", lambda: (s := status()).get("step") and s, timeout=300, interval=0.5)
        figures["job create -> first step in .status"] = time.monotonic() - created
        table = real_node.kubectl("get", "a2j", "tiny", "-n", namespace).stdout
        header, row = table.splitlines()[:2]
        columns = dict(zip(header.split(), row.split()))
        assert int(columns["STEP"]) >= 1 and math.isfinite(float(columns["LOSS"])), table
        final = wait_for("phase Succeeded", lambda: (s := status()).get("phase") in ("Succeeded", "Failed") and s, timeout=600, interval=1)
        figures["job create -> Succeeded"] = time.monotonic() - created
    # After the operator's block: kopf's test runner captures this process's stdout while it runs.
    print(table, {k: round(v, 1) for k, v in figures.items()})
    logs = real_node.kubectl("logs", "-n", namespace, "-l", "heurimentor.io/job=tiny", "--tail=400", check=False).stdout
    assert final["phase"] == "Succeeded", f"{final}\n{logs[-4000:]}"
    assert final["step"] == STEPS and mid["step"] <= STEPS
    assert math.isfinite(final["loss"]) and final["loss"] > 0
