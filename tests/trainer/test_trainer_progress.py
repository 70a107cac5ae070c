"""Rank 0 annotates its own pod with its progress (heurimentor.io/progress), against the real
apiserver, as the chart's worker ServiceAccount (bound only to the chart's worker ClusterRole); an unreachable API
never stops training."""

from __future__ import annotations

import json
import socket
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from heurimentor_trainer.train import main
from tests.trainer.testlib import REPO, base_config, log_records, make_sources, write_config

CHART = REPO / "charts" / "heurimentor"


def worker_service_account_kubeconfig(kube, namespace: str, tmp_path: Path) -> Path:
    """The chart's worker ServiceAccount in ``namespace`` (helm --set worker.namespaces={ns}), bound to
    the chart's worker ClusterRole; a kubeconfig holding a token the apiserver issued for it."""
    rendered = subprocess.run(
        [
            str(kube.bin_dir / "helm"),
            "template",
            "hm",
            str(CHART),
            "--set",
            f"worker.namespaces={{{namespace}}}",
            "--show-only",
            "templates/operator-rbac.yaml",
            "--show-only",
            "templates/worker-rbac.yaml",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    worker = [d for d in docs if d["metadata"]["name"] in ("hm-worker", "heurimentor-worker")]
    assert sorted(d["kind"] for d in worker) == ["ClusterRole", "RoleBinding", "ServiceAccount"], [d["kind"] for d in docs]
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(worker))
    token = kube.kubectl("create", "token", "heurimentor-worker", "-n", namespace, "--duration=10m").stdout.strip()
    path = tmp_path / "worker.kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "worker",
                "clusters": [{"name": "c", "cluster": {"server": kube.server, "certificate-authority": str(kube.ca.cert)}}],
                "users": [{"name": "worker", "user": {"token": token}}],
                "contexts": [{"name": "worker", "context": {"cluster": "c", "user": "worker"}}],
            }
        )
    )
    return path


def fake_worker_pod(kube, namespace: str, name: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"nodeName": "kwok-cpu-0", "containers": [{"name": "trainer", "image": "trainer:test"}]},
    }
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(pod))


def annotation(kube, namespace: str, name: str) -> dict | None:
    pod = json.loads(kube.kubectl("get", "pod", name, "-n", namespace, "-o", "json").stdout)
    raw = (pod["metadata"].get("annotations") or {}).get("heurimentor.io/progress")
    return json.loads(raw) if raw else None


@pytest.fixture
def namespace(kube):
    name = kube.create_namespace(f"progress-{uuid.uuid4().hex[:8]}")
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_rank0_reports_step_loss_tokens_and_checkpoint_on_its_pod(kube, namespace, tmp_path, monkeypatch, capfd):
    fake_worker_pod(kube, namespace, "job-a100-0")
    kubeconfig = worker_service_account_kubeconfig(kube, namespace, tmp_path)
    # The worker user may patch pods but not, say, delete them: the role is as narrow as the chart says.
    denied = kube.kubectl("delete", "pod", "job-a100-0", "-n", namespace, kubeconfig=kubeconfig, check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
    for key, value in {"POD_NAME": "job-a100-0", "POD_NAMESPACE": namespace, "KUBECONFIG": str(kubeconfig)}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    config = base_config(
        tmp_path, make_sources(tmp_path / "shards"), steps=6, **{"checkpoint.interval": 3, "metrics.progress_interval_steps": 2}
    )
    main(["--config", str(write_config(tmp_path / "train.yaml", config))])
    losses = {r["step"]: r["loss"] for r in log_records(capfd.readouterr().err, "step")}
    report = annotation(kube, namespace, "job-a100-0")
    assert report == {
        "step": 6,
        "loss": pytest.approx(losses[6]),
        "mixtureVersion": None,
        "tokens": 6 * 12 * 16,
        "checkpoint": {"step": 6, "path": str(tmp_path / "ckpt" / "step-00000006")},
    }


def test_unreachable_apiserver_warns_once_and_training_finishes(tmp_path, monkeypatch, capfd, request):
    # A bound port that does not listen: connections are refused for as long as it is held.
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    request.addfinalizer(closed.close)
    dead = tmp_path / "dead.kubeconfig"
    dead.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "dead",
                "clusters": [{"name": "dead", "cluster": {"server": f"http://127.0.0.1:{closed.getsockname()[1]}"}}],
                "users": [{"name": "dead", "user": {"token": "x"}}],
                "contexts": [{"name": "dead", "context": {"cluster": "dead", "user": "dead"}}],
            }
        )
    )
    for key, value in {"POD_NAME": "job-a100-0", "POD_NAMESPACE": "nowhere", "KUBECONFIG": str(dead)}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    config = base_config(
        tmp_path, make_sources(tmp_path / "shards"), steps=4, **{"checkpoint.interval": 2, "metrics.progress_interval_steps": 1}
    )
    main(["--config", str(write_config(tmp_path / "train.yaml", config))])
    logs = capfd.readouterr().err
    # Six reports (four steps, two checkpoints) all failed: one warning, no per-retry noise from urllib3.
    warnings = [
        r for r in map(json.loads, filter(None, (line[line.find("{") :] for line in logs.splitlines()))) if r.get("level") == "warning"
    ]
    assert len(warnings) == 1, warnings
    assert (
        warnings[0]["logger"] == "heurimentor_trainer.progress"
        and "nowhere/job-a100-0" in warnings[0]["msg"]
        and "Connection refused" in warnings[0]["msg"]
    )
    assert (tmp_path / "ckpt" / "latest").read_text() == "step-00000004"
