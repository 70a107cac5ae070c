"""Operator settings precedence, kopf settings at startup, the CLI, the chart's templates."""

from __future__ import annotations

import asyncio
import subprocess

import kopf
import pytest
import yaml
from typer.testing import CliRunner

from heurimentor_operator import handlers
from heurimentor_operator.config import OperatorSettings, load_settings
from heurimentor_operator.k8s import Conflict, Kube, merge_patch
from tests.operator.testlib import CHART, REPO
from tests.operator.testlib_manifests import job


def test_settings_precedence_defaults_file_env_flags(tmp_path, monkeypatch):
    path = tmp_path / "operator.yaml"
    path.write_text("resync_interval_s: 7\nmetrics_port: 9100\npeering_name: from-file\n")
    monkeypatch.setenv("HEURIMENTOR_OPERATOR_METRICS_PORT", "9200")
    monkeypatch.setenv("KUBECONFIG", "/tmp/some.kubeconfig")
    cfg = load_settings(path, peering_name="from-flag", priority=None)
    assert cfg.resync_interval_s == 7  # file over default
    assert cfg.metrics_port == 9200  # env over file
    assert cfg.peering_name == "from-flag"  # flag over file; None flags are "not given"
    assert str(cfg.kubeconfig) == "/tmp/some.kubeconfig"
    assert cfg.watch_server_timeout_s == 300  # default


def test_bad_settings_file_names_the_file(tmp_path):
    path = tmp_path / "operator.yaml"
    path.write_text("- not\n- a mapping\n")
    with pytest.raises(ValueError, match=f"operator config file {path} must hold a mapping"):
        load_settings(path)
    path.write_text("resync_interval_s: soon\n")
    with pytest.raises(ValueError, match="resync_interval_s"):
        load_settings(path)


def test_startup_sets_watch_timeouts_and_server_side_pod_filter(kube, monkeypatch):
    settings = kopf.OperatorSettings()
    memo = kopf.Memo()
    monkeypatch.setattr(
        handlers,
        "SETTINGS",
        OperatorSettings(kubeconfig=kube.kubeconfig, metrics_port=0, health_port=0, watch_server_timeout_s=120, watch_client_timeout_s=150),
    )

    async def start_and_stop():
        await handlers.configure(settings=settings, memo=memo)
        await handlers.shutdown(memo=memo)

    asyncio.run(start_and_stop())
    assert (settings.watching.server_timeout, settings.watching.client_timeout) == (120, 150)
    assert settings.watching.connect_timeout == 10.0
    assert settings.scanning.disabled is True
    assert settings.persistence.finalizer == "heurimentor.io/operator"
    from kopf._cogs.structs.references import Resource

    pods = Resource(group="", version="v1", plural="pods", kind="Pod", namespaced=True, preferred=True, verbs=["list", "watch"])
    assert list(settings.watching.label_selectors.collect(pods)) == ["app.kubernetes.io/managed-by=heurimentor-operator"]


def test_status_write_with_a_stale_resource_version_is_a_conflict(kube, a2j_crd, namespace):
    admin = Kube(kube.api_client())
    kube.kubectl("create", "-f", "-", input=yaml.safe_dump(job(name="racy", namespace=namespace)))
    stale = admin.get_job(namespace, "racy")["metadata"]["resourceVersion"]
    kube.kubectl("scale", "a2j/racy", "-n", namespace, "--replicas=3")  # someone else wrote meanwhile
    with pytest.raises(Conflict, match=f"{namespace}/racy changed since resourceVersion {stale}"):
        admin.patch_job_status(namespace, "racy", stale, {"phase": "Running"})
    fresh = admin.get_job(namespace, "racy")
    assert "status" not in fresh or fresh["status"].get("phase") != "Running"
    admin.patch_job_status(namespace, "racy", fresh["metadata"]["resourceVersion"], {"phase": "Running"})
    assert admin.get_job(namespace, "racy")["status"]["phase"] == "Running"


def test_status_merge_patch_removes_nested_keys_on_the_real_apiserver(kube, a2j_crd, namespace):
    """A merge patch keeps what it does not name: a refused rollback's error must not outlive it."""
    admin = Kube(kube.api_client())
    kube.kubectl("create", "-f", "-", input=yaml.safe_dump(job(name="patched", namespace=namespace)))
    old = {"phase": "Running", "rollback": {"requested": "soon", "error": "not a step", "step": 20}, "eta": "5m"}
    rv = admin.get_job(namespace, "patched")["metadata"]["resourceVersion"]
    admin.patch_job_status(namespace, "patched", rv, old)
    new = {"phase": "Running", "rollback": {"requested": "10", "step": 10}}
    patch = merge_patch(old, new)
    assert patch == {"eta": None, "rollback": {"error": None, "requested": "10", "step": 10}}
    rv = admin.get_job(namespace, "patched")["metadata"]["resourceVersion"]
    admin.patch_job_status(namespace, "patched", rv, patch)
    assert admin.get_job(namespace, "patched")["status"] == new


def test_annotation_patch_is_refused_for_a_replaced_job(kube, a2j_crd, namespace):
    admin = Kube(kube.api_client())
    kube.kubectl("create", "-f", "-", input=yaml.safe_dump(job(name="replaced", namespace=namespace)))
    first_uid = admin.get_job(namespace, "replaced")["metadata"]["uid"]
    kube.kubectl("delete", "a2j", "replaced", "-n", namespace)
    kube.kubectl("create", "-f", "-", input=yaml.safe_dump(job(name="replaced", namespace=namespace)))
    with pytest.raises(Conflict, match="was replaced"):
        admin.patch_job_annotations(namespace, "replaced", first_uid, {"heurimentor.io/rollback-to-step": "5"})
    live = admin.get_job(namespace, "replaced")
    assert "heurimentor.io/rollback-to-step" not in (live["metadata"].get("annotations") or {})
    admin.patch_job_annotations(namespace, "replaced", live["metadata"]["uid"], {"heurimentor.io/rollback-to-step": "5"})
    assert admin.get_job(namespace, "replaced")["metadata"]["annotations"]["heurimentor.io/rollback-to-step"] == "5"


def test_cli_render_prints_what_the_operator_would_create():
    from heurimentor.cli import app

    out = CliRunner().invoke(app, ["operator", "render", str(REPO / "deploy" / "aquila2-7b.yaml")])
    assert out.exit_code == 0, out.output
    docs = list(yaml.safe_load_all(out.output))
    kinds = [d["kind"] for d in docs]
    assert kinds[:2] == ["ConfigMap", "Service"] and kinds.count("Pod") == 8
    pools = [d["metadata"]["labels"]["heurimentor.io/pool"] for d in docs if d["kind"] == "Pod"]
    assert pools.count("a100") == 4 and pools.count("h800") == 4


def test_cli_render_refuses_a_bad_manifest(tmp_path):
    from heurimentor.cli import app

    bad = job()
    bad["spec"]["model"] = {"preset": "gpt-x"}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    out = CliRunner().invoke(app, ["operator", "render", str(path)])
    assert out.exit_code == 2 and "unknown model preset 'gpt-x'" in out.output
    # A file without a job (here only the claim tiny-demo.yaml ships next to its job) is named as such.
    claim_only = tmp_path / "claim.yaml"
    claim_only.write_text((REPO / "deploy" / "tiny-demo.yaml").read_text().split("\n---\n")[0])
    out = CliRunner().invoke(app, ["operator", "render", str(claim_only)])
    assert out.exit_code == 2 and "expected one Aquila2TrainingJob document, found 0" in out.output


def test_cli_render_reads_the_job_of_a_manifest_that_carries_its_claim():
    from heurimentor.cli import app

    out = CliRunner().invoke(app, ["operator", "render", str(REPO / "deploy" / "tiny-demo.yaml")])
    assert out.exit_code == 0, out.output
    pods = [d for d in yaml.safe_load_all(out.output) if d["kind"] == "Pod"]
    assert len(pods) == 2
    claims = {v["persistentVolumeClaim"]["claimName"] for p in pods for v in p["spec"]["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"tiny-demo-checkpoints", "hm-dmu-shards"}


def test_chart_operator_templates_are_accepted_by_the_apiserver(kube, a2j_crd):
    helm = str(kube.bin_dir / "helm")
    for values in ([], ["--set", "operator.replicas=1,operator.peering.standalone=true"], ["--set", "operator.namespaces={team-a,team-b}"]):
        rendered = subprocess.run(
            [
                helm,
                "template",
                "hm",
                str(CHART),
                "--namespace",
                "default",
                *values,
                "--show-only",
                "templates/operator-deployment.yaml",
                "--show-only",
                "templates/operator-rbac.yaml",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        out = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered, check=False)
        assert out.returncode == 0, out.stderr
        deployment = next(d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment")
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[:2] == ["operator", "run"]
        if "operator.replicas=1,operator.peering.standalone=true" in values:
            assert "--standalone" in args and deployment["spec"]["replicas"] == 1
        if "operator.namespaces={team-a,team-b}" in values:
            assert "--namespace=team-a" in args and "--namespace=team-b" in args
