"""The platform as a user installs it, on the real node: `helm install` of charts/heurimentor with
deploy/values-dev.yaml (operator, DMU, TSM and PostgreSQL from the images of `make images`; two
hostPath PersistentVolumes stand in for a storage class), `helm test`, and the installed operator,
in its pod with its own ServiceAccount, running a job of the trainer image to Succeeded."""

from __future__ import annotations

import json
import subprocess
import time

import yaml

from hack.testenv.realnode import archive_image_name, image_archives
from tests.operator.testlib import CHART, REPO, wait_for
from tests.realnode.testlib import cpu_training_job
from tests.trainer.testlib import make_sources

RELEASE, SYSTEM, RESEARCH = "hm", "heurimentor", "research"


def _helm(kube, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(kube.bin_dir / "helm"), *args], capture_output=True, text=True, env=kube.env, timeout=timeout, check=False)


def _volumes(tmp_path) -> str:
    volumes = []
    for name, size in (("dmu", "10Gi"), ("postgresql", "5Gi")):
        path = tmp_path / f"pv-{name}"
        path.mkdir()
        path.chmod(0o777)  # the images run as their own non-root users
        volumes.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": f"realnode-{name}"},
                "spec": {
                    "capacity": {"storage": size},
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "",
                    "persistentVolumeReclaimPolicy": "Delete",
                    "hostPath": {"path": str(path), "type": "Directory"},
                },
            }
        )
    return yaml.safe_dump_all(volumes)


def test_helm_install_then_the_installed_operator_trains_a_job(real_node, a2j_crd, tmp_path):
    real_node.kubectl("apply", "-f", "-", input=_volumes(tmp_path))
    real_node.create_namespace(RESEARCH)
    started = time.monotonic()
    # No --wait: the migrations are a post-install hook, and the DMU and TSM are not Ready before
    # them, so `helm install --wait` can never finish (seen here; the README's line has no --wait).
    install = _helm(
        real_node,
        "install", RELEASE, str(CHART), "-n", SYSTEM, "--create-namespace", "-f", str(REPO / "deploy" / "values-dev.yaml"),
        "--set", "dmu.persistence.storageClass=-", "--set", "database.bundled.persistence.storageClass=-",
        "--set", f"worker.namespaces={{{RESEARCH}}}", "--timeout", "5m",
    )  # fmt: skip
    try:
        assert install.returncode == 0, install.stderr
        real_node.kubectl("wait", "--for=condition=Ready", "pod", "--all", "-n", SYSTEM, "--timeout=180s", timeout=200)
        figures = {"helm install -> all Ready": time.monotonic() - started}
        tested = _helm(real_node, "test", RELEASE, "-n", SYSTEM, "--timeout", "3m")
        assert tested.returncode == 0, tested.stdout + tested.stderr

        shards = make_sources(tmp_path / "shards", names=("en", "zh"), docs=30, shards=1)
        job = cpu_training_job(
            "installed",
            RESEARCH,
            image=archive_image_name(image_archives(["trainer"])[0]),
            service_account="heurimentor-worker",
            shards=shards,
            hyperparameters={"globalBatchSize": 2, "steps": 8},
            elastic={"minReplicas": 1, "maxReplicas": 1, "replicas": 1},
            checkpoint={"intervalSteps": 4},
            runPolicy={"backoffLimit": 0},
        )
        submitted = time.monotonic()
        real_node.kubectl("apply", "-f", "-", input=yaml.safe_dump(job))

        def status() -> dict:
            return json.loads(real_node.kubectl("get", "a2j", "installed", "-n", RESEARCH, "-o", "json").stdout).get("status", {})

        final = wait_for(
            "the installed operator to finish the job",
            lambda: (s := status()).get("phase") in ("Succeeded", "Failed") and s,
            timeout=400,
            interval=1,
        )
        figures["job apply -> Succeeded (installed operator)"] = time.monotonic() - submitted
        print({k: round(v, 1) for k, v in figures.items()})
        operator = json.loads(
            real_node.kubectl("get", "pods", "-n", SYSTEM, "-l", "app.kubernetes.io/name=heurimentor-operator", "-o", "json").stdout
        )["items"]
        assert final["phase"] == "Succeeded" and final["step"] == 8, final
        assert [c["restartCount"] for p in operator for c in p["status"]["containerStatuses"]] == [0], "the operator pod restarted"
    finally:
        _helm(real_node, "uninstall", RELEASE, "-n", SYSTEM, "--wait", "--timeout", "2m")
        real_node.kubectl("delete", "namespace", RESEARCH, SYSTEM, "--wait=false", check=False)
