"""Pure builders: manifests, batch split, training config (no cluster)."""

from __future__ import annotations

import re

import pytest
import yaml

from heurimentor.contracts.batch import rows_per_rank, split_global_batch
from heurimentor.contracts.images import TRAINER_GID
from heurimentor.contracts.jobs import JOB_NAME_PATTERN
from heurimentor_operator.builders import (
    assign_pools,
    build_config_map,
    build_pod,
    build_service,
    rendezvous_endpoint,
)
from heurimentor_operator.constants import LABEL_ATTEMPT, LABEL_JOB, LABEL_KUEUE_QUEUE, LABEL_POOL, PROMETHEUS_DIR
from heurimentor_operator.spec import SpecError, parse_job
from tests.operator.testlib import REPO
from tests.operator.testlib_manifests import job


def test_pools_fill_in_order_up_to_their_max():
    spec = parse_job(job(elastic={"replicas": 3}))
    assert assign_pools(spec, 3) == {"a100": 1, "h800": 2}
    assert assign_pools(spec, 1) == {"a100": 1, "h800": 0}


@pytest.mark.parametrize(
    ("batch", "pools", "expected"),
    [
        (96, [("a100", 1, 1.0), ("h800", 2, 2.0)], {"a100": 19, "h800": 77}),
        (1728, [("a100", 4, 1.0), ("h800", 4, 2.0)], {"a100": 576, "h800": 1152}),
        (10, [("a", 1, 1.0), ("b", 1, 1.0), ("c", 1, 1.0)], {"a": 4, "b": 3, "c": 3}),
        (64, [("a", 2, 1.0), ("b", 0, 5.0)], {"a": 64, "b": 0}),
    ],
)
def test_global_batch_split_by_throughput_adds_up(batch, pools, expected):
    shares = split_global_batch(batch, pools, ranks_per_replica=1)
    assert shares == expected
    assert sum(shares.values()) == batch


def test_every_rank_gets_a_sequence_even_for_a_slow_pool():
    # 1 slow pod with 8 ranks against a pool 100x faster: it still gets 8 (one per rank).
    shares = split_global_batch(64, [("slow", 1, 0.01), ("fast", 6, 1.0)], ranks_per_replica=8)
    assert shares["slow"] == 8 and sum(shares.values()) == 64


def test_pod_carries_torchrun_contract_and_pool_template():
    spec = parse_job(job(scheduling={"queueName": "llm", "priorityClassName": "high"}))
    pod = build_pod(spec, spec.pools[1], 3, attempt=2)
    assert pod["metadata"]["name"] == "job-a-h800-3"
    labels = pod["metadata"]["labels"]
    assert labels[LABEL_JOB] == "job-a" and labels[LABEL_POOL] == "h800" and labels[LABEL_ATTEMPT] == "2"
    assert labels[LABEL_KUEUE_QUEUE] == "llm"
    owner = pod["metadata"]["ownerReferences"][0]
    assert owner["uid"] == "0123456789abcdef" and owner["controller"] is True
    pod_spec = pod["spec"]
    assert pod_spec["nodeSelector"] == {"heurimentor.io/accelerator": "nvidia-h800"}
    assert pod_spec["priorityClassName"] == "high" and pod_spec["restartPolicy"] == "Never"
    assert (pod_spec["hostname"], pod_spec["subdomain"]) == ("h800-3", "job-a")
    container = pod_spec["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PET_NNODES"] == "1:4"
    assert env["PET_NPROC_PER_NODE"] == "8"
    assert env["PET_RDZV_ENDPOINT"] == "a100-0.job-a.ns.svc:29400" == rendezvous_endpoint(spec)
    assert env["PET_RDZV_ID"].endswith("-2")
    assert container["command"][0] == "torchrun" and "heurimentor_trainer.train" in container["command"]
    assert container["resources"] == {"limits": {"nvidia.com/gpu": "8"}}
    config_volume = next(v for v in pod_spec["volumes"] if v["name"] == "config")
    assert config_volume["configMap"]["items"] == [{"key": "train-h800.yaml", "path": "train.yaml"}]


def test_a_provisioned_checkpoint_volume_is_writable_by_the_trainer_images_group():
    volume = {"persistentVolumeClaim": {"claimName": "job-a-checkpoints"}}
    spec = parse_job(job(checkpoint={"path": "/checkpoints", "intervalSteps": 10, "volume": volume}))
    pod_spec = build_pod(spec, spec.pools[0], 0, attempt=0)["spec"]
    assert {"name": "checkpoints", **volume} in pod_spec["volumes"]
    assert pod_spec["securityContext"]["fsGroup"] == TRAINER_GID
    # The image's own group, as docker/trainer.Dockerfile creates it.
    dockerfile = (REPO / "docker" / "trainer.Dockerfile").read_text()
    assert re.search(rf"useradd --uid \d+ --gid {TRAINER_GID}\b", dockerfile) and f"USER {TRAINER_GID}:{TRAINER_GID}" in dockerfile


def test_command_override_replaces_torchrun():
    spec = parse_job(job(command=["python", "-m", "heurimentor_trainer.train"]))
    assert build_pod(spec, spec.pools[0], 0, attempt=0)["spec"]["containers"][0]["command"] == ["python", "-m", "heurimentor_trainer.train"]


def test_config_map_holds_each_pools_static_facts_only():
    spec = parse_job(job())
    cm = build_config_map(spec)
    a100 = yaml.safe_load(cm["data"]["train-a100.yaml"])
    h800 = yaml.safe_load(cm["data"]["train-h800.yaml"])
    # The pool and its relative throughput: the workers split the batch from these after each rendezvous.
    assert (a100["relative_throughput"], h800["relative_throughput"]) == (1.0, 2.0)
    assert "pool_share" not in a100
    # The split they compute (1 a100 rank, 2 h800 ranks) is the one the operator's status shows.
    rows = rows_per_rank(96, [("a100", 1.0), ("h800", 2.0), ("h800", 2.0)])
    assert rows == [19, 39, 38] and split_global_batch(96, [("a100", 1, 1.0), ("h800", 2, 2.0)]) == {"a100": 19, "h800": 77}
    assert (a100["pool"], a100["preset"], a100["model"], a100["global_batch"], a100["steps"]) == ("a100", "debug", {}, 96, 100)
    assert a100["data"] == {"shard_root": "/data/shards", "mixture": "pretrain", "dmu_url": "http://dmu:8000"}
    assert a100["checkpoint"] == {"dir": "/ckpt", "interval": 10}
    # Port and multiprocess directory together, or local rank 0 would serve only its own series.
    assert a100["metrics"] == {"tsm_url": "http://tsm:8000", "prometheus_port": 9400, "prometheus_dir": PROMETHEUS_DIR}
    assert a100["optim"] == {"lr": 1e-3}


def test_config_map_is_the_same_at_every_scale():
    """A rescale must not rewrite the ConfigMap: a pod the kubelet has not refreshed yet would
    read other numbers than its peers and exit, spending one of the job's restarts."""
    data = build_config_map(parse_job(job()))["data"]
    for replicas in (1, 3, 4):
        assert build_config_map(parse_job(job(elastic={"replicas": replicas})))["data"] == data


def test_rendered_config_is_accepted_by_the_trainer(tmp_path):
    """The trainer rejects unknown fields: the operator's config must load through its own loader."""
    from heurimentor_trainer.config import load_config

    spec = parse_job(job(hyperparameters={"globalBatchSize": 96, "tokens": 96 * 128 * 50, "seqLen": 128, "steps": None}))
    for key, text in build_config_map(spec)["data"].items():
        (tmp_path / key).write_text(text)
        cfg = load_config(tmp_path / key, environ={})
        assert cfg.steps == 50 and cfg.seq_len == 128 and cfg.global_batch == 96
        assert cfg.data.mixture == "pretrain" and cfg.metrics.tsm_url == "http://tsm:8000"
        # The job's name on the TSM is a URL path segment: namespace and name, no '/'.
        assert cfg.job == "ns.job-a" and re.fullmatch(JOB_NAME_PATTERN, cfg.job)
        assert (cfg.metrics.prometheus_port, cfg.metrics.prometheus_dir) == (9400, PROMETHEUS_DIR)
    # data.tokenizerId (a DMU data dir with several tokenizers' shards) reaches the trainer's loader.
    spec = parse_job(job(data={"shardRoot": "/data/shards", "tokenizerId": "0123456789abcdef"}))
    (tmp_path / "tok.yaml").write_text(next(iter(build_config_map(spec)["data"].values())))
    assert load_config(tmp_path / "tok.yaml", environ={}).data.tokenizer_id == "0123456789abcdef"


def test_pod_env_for_torchrun_restarts_and_progress_reports():
    spec = parse_job(job(serviceAccountName="trainer"))
    pod = build_pod(spec, spec.pools[0], 0, attempt=0)
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    # pytorch#135712: without it a torchrun restart of the worker group fails in Gloo connectFullMesh.
    assert env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"]["value"] == "1"
    # A scale-down re-forms the world once the leaver's heartbeats expire plus the last call, not ~50 s later.
    assert "--rdzv-conf=$(PET_RDZV_CONF)" in container["command"]
    rdzv = {k: int(v) for k, v in (item.split("=") for item in env["PET_RDZV_CONF"]["value"].split(","))}
    assert rdzv["keep_alive_interval"] * rdzv["keep_alive_max_attempt"] + rdzv["last_call_timeout"] <= 20, rdzv
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert pod["spec"]["serviceAccountName"] == "trainer"
    # The multiprocess directory is a per-pod emptyDir mounted where the rendered config says.
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == PROMETHEUS_DIR)
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == mount["name"])
    assert volume == {"name": mount["name"], "emptyDir": {}}
    assert {"name": "metrics", "containerPort": 9400} in container["ports"]


def test_metrics_port_zero_exports_nothing():
    spec = parse_job(job(metrics={"prometheusPort": 0}))
    metrics = yaml.safe_load(build_config_map(spec)["data"]["train-a100.yaml"])["metrics"]
    assert "prometheus_port" not in metrics and "prometheus_dir" not in metrics
    pod = build_pod(spec, spec.pools[0], 0, attempt=0)
    assert all(m["mountPath"] != PROMETHEUS_DIR for m in pod["spec"]["containers"][0]["volumeMounts"])
    assert "serviceAccountName" not in pod["spec"]
    custom = yaml.safe_load(build_config_map(parse_job(job(metrics={"prometheusPort": 9500})))["data"]["train-a100.yaml"])
    assert custom["metrics"]["prometheus_port"] == 9500 and custom["metrics"]["prometheus_dir"] == PROMETHEUS_DIR


def test_rollback_step_reaches_the_pods_env():
    spec = parse_job(job())
    env = {
        e["name"]: e.get("value") for e in build_pod(spec, spec.pools[0], 0, attempt=3, rollback_step=1200)["spec"]["containers"][0]["env"]
    }
    assert env["HEURIMENTOR_ROLLBACK_TO_STEP"] == "1200" and "HEURIMENTOR_ROLLBACK_SKIP_STEPS" not in env
    pod = build_pod(spec, spec.pools[0], 0, attempt=3, rollback_step=1200, rollback_skip=(1200, 1450))
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["HEURIMENTOR_ROLLBACK_SKIP_STEPS"] == "1200-1450"


def test_explicit_model_config_is_rendered_snake_case():
    spec = parse_job(job(model={"config": {"dim": 64, "nLayers": 2, "nHeads": 4, "nKVHeads": 2, "ffnHiddenDim": 176}}))
    cm = build_config_map(spec)
    model = yaml.safe_load(cm["data"]["train-a100.yaml"])["model"]
    assert model == {"dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "ffn_hidden_dim": 176}


def test_service_is_headless_and_publishes_unready_workers():
    svc = build_service(parse_job(job()))
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True


def test_template_hash_ignores_replicas_but_not_the_image():
    base = parse_job(job()).template_hash()
    assert parse_job(job(elastic={"replicas": 4})).template_hash() == base
    assert parse_job(job(runPolicy={"suspend": True})).template_hash() == base
    assert parse_job(job(image="trainer:other")).template_hash() != base
    # Switching the operator's TSM rollback-following on or off leaves the workers alone.
    assert parse_job(job(tsm={"url": "http://tsm:8000", "autoRollback": True})).template_hash() == base
    assert parse_job(job(tsm={"url": "http://tsm2:8000", "autoRollback": True})).template_hash() != base


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"model": {"preset": "gpt-5"}}, "unknown model preset 'gpt-5'"),
        ({"model": {}}, "exactly one of spec.model.preset"),
        ({"elastic": {"minReplicas": 5, "maxReplicas": 2, "replicas": 2}}, "minReplicas 5 exceeds maxReplicas 2"),
        ({"hyperparameters": {"globalBatchSize": 0, "steps": 1}}, "globalBatchSize must be positive"),
    ],
)
def test_parse_rejects_bad_specs_naming_the_job(overrides, fragment):
    with pytest.raises(SpecError) as err:
        parse_job(job(**overrides))
    assert fragment in str(err.value) and "ns/job-a" in str(err.value)
