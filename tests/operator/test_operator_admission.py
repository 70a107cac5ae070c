"""Specs that can never run are refused by the apiserver (the CRD's CEL rules), tried as a user
would with kubectl, each with a message naming the field."""

from __future__ import annotations

import pytest
import yaml

from heurimentor_operator.builders import build_pod
from heurimentor_operator.spec import parse_job
from heurimentor_trainer.presets import PRESETS
from tests.operator.testlib_manifests import job


def one_pool(spec):
    spec["pools"] = [{"name": "h800", "resources": {"limits": {"nvidia.com/gpu": 8}}}]


def create(kube, body, *, dry_run=False):
    args = ["create", "-f", "-"] + (["--dry-run=server"] if dry_run else [])
    return kube.kubectl(*args, input=yaml.safe_dump(body), check=False)


@pytest.mark.parametrize(
    ("change", "messages"),
    [
        (
            lambda s: s["hyperparameters"].update(seqLen=129),
            ("spec.hyperparameters.seqLen: Invalid value: ", "hyperparameters.seqLen exceeds the model's maximum sequence length"),
        ),
        (
            lambda s: s.update(
                model={"config": {"dim": 64, "nLayers": 1, "nHeads": 4, "nKVHeads": 2, "ffnHiddenDim": 8, "maxSeqLen": 512}},
                hyperparameters={**s["hyperparameters"], "seqLen": 1024},
            ),
            ("spec.hyperparameters.seqLen: Invalid value: ", "(model.config.maxSeqLen, or the preset's"),
        ),
        (
            lambda s: s["hyperparameters"].update(microBatchSize=5),
            (
                "spec.hyperparameters.microBatchSize: Invalid value: ",
                "hyperparameters.microBatchSize must divide hyperparameters.globalBatchSize",
            ),
        ),
        # One pool, 2 workers x 8 ranks: 6 sequences per rank are no whole micro batches of 4.
        (
            lambda s: (one_pool(s), s["hyperparameters"].update(microBatchSize=4)),
            "with one pool, globalBatchSize must be a multiple of workers (elastic.replicas, at most the pool's maxReplicas) x nprocPerNode x microBatchSize",
        ),
        (
            lambda s: s["data"].update(dmuUrl="dmu:8000"),
            "data.dmuUrl must be an absolute http(s) URL such as http://hm-dmu.heurimentor.svc:8700, not 'dmu:8000'",
        ),
        (lambda s: s["data"].update(dmuUrl="not a url"), "data.dmuUrl must be an absolute http(s) URL"),
        (lambda s: s["tsm"].update(url="/tsm"), "tsm.url must be an absolute http(s) URL"),
        (
            lambda s: s["checkpoint"].update(path="ckpt"),
            "checkpoint.path must be an absolute path inside the pod (e.g. /checkpoints), not 'ckpt'",
        ),
        (lambda s: s["data"].update(shardRoot="shards"), "data.shardRoot must be an absolute path inside the pod"),
        (
            lambda s: s.update(env=[{"name": "WANDB_MODE", "value": "offline"}, {"name": "PET_NNODES", "value": "1"}]),
            ("spec.env[1].name: Forbidden: ", "env[].name PET_NNODES is set by the operator on every worker"),
        ),
        (
            lambda s: (s["elastic"].update(minReplicas=3, replicas=3), s["pools"][1].update(maxReplicas=1)),
            ("spec.pools: Invalid value: ", "pools[].maxReplicas add up to fewer than elastic.minReplicas: the job could never start"),
        ),
    ],
)
def test_a_spec_that_can_never_run_is_refused_naming_the_field(kube, a2j_crd, namespace, change, messages):
    """``messages``: the field path the apiserver reports and the rule's message, or the message."""
    body = job(namespace=namespace)
    change(body["spec"])
    out = create(kube, body)
    assert out.returncode != 0, f"apiserver accepted a job that can never run: {body['spec']}"
    for message in (messages,) if isinstance(messages, str) else messages:
        assert message in out.stderr, out.stderr
    assert kube.kubectl("get", "a2j", "-n", namespace, "-o", "name").stdout.strip() == ""


def test_every_variable_the_operator_sets_is_refused_in_env(kube, a2j_crd, namespace):
    """The refused names are exactly what build_pod sets (besides a torch switch a user may flip)."""
    spec = parse_job(job(namespace=namespace))
    pod = build_pod(spec, spec.pools[0], 0, attempt=1, rollback_step=10, rollback_skip=(11, 12))
    names = [e["name"] for e in pod["spec"]["containers"][0]["env"] if e["name"] != "TORCH_DISABLE_SHARE_RDZV_TCP_STORE"]
    assert len(names) >= 15
    for name in names:
        body = job(namespace=namespace, env=[{"name": name, "value": "x"}])
        out = create(kube, body, dry_run=True)
        assert out.returncode != 0 and f"env[].name {name} is set by the operator" in out.stderr, f"{name}: {out.stderr}"
    # The trainer's own settings stay open to users (a secret's token, for example).
    body = job(namespace=namespace, env=[{"name": "HEURIMENTOR_TRAIN__METRICS__TSM_TOKEN", "value": "t"}])
    assert create(kube, body, dry_run=True).returncode == 0


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_the_crd_knows_each_presets_maximum_sequence_length(kube, a2j_crd, namespace, preset):
    longest = PRESETS[preset].model.max_seq_len
    body = job(namespace=namespace, model={"preset": preset})
    body["spec"]["hyperparameters"]["seqLen"] = longest
    out = create(kube, body, dry_run=True)
    assert out.returncode == 0, out.stderr
    body["spec"]["hyperparameters"]["seqLen"] = longest + 1
    out = create(kube, body, dry_run=True)
    assert out.returncode != 0 and "hyperparameters.seqLen exceeds the model's maximum sequence length" in out.stderr


def test_valid_neighbours_of_the_refused_specs_are_accepted(kube, a2j_crd, namespace):
    body = job(namespace=namespace)
    spec = body["spec"]
    spec["hyperparameters"].update(seqLen=128, microBatchSize=4)  # 96 = 2 pools' shares 32 and 64, 4 and 8 per rank
    spec["data"]["dmuUrl"] = "https://dmu.example.org:8443/base"
    spec["env"] = [{"name": "NCCL_DEBUG", "value": "INFO"}]
    spec["pools"][1]["maxReplicas"] = 3  # 1 + 3 reach maxReplicas 4
    out = create(kube, body, dry_run=True)
    assert out.returncode == 0, out.stderr
    single = job(namespace=namespace)
    one_pool(single["spec"])
    single["spec"]["hyperparameters"].update(globalBatchSize=128, microBatchSize=4)  # 128 / (2 x 8) = 8 = 2 micro batches
    out = create(kube, single, dry_run=True)
    assert out.returncode == 0, out.stderr
