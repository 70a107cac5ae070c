"""The apiserver itself rejects bad Aquila2TrainingJobs, with messages a person can act on."""

from __future__ import annotations

import copy

import pytest
import yaml

from tests.operator.testlib import REPO
from tests.operator.testlib_manifests import job


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda s: s["elastic"].update(minReplicas=5, maxReplicas=2, replicas=2),
            "elastic.minReplicas must not exceed elastic.maxReplicas",
        ),
        (lambda s: s["elastic"].update(replicas=9), "elastic.replicas must lie within [elastic.minReplicas, elastic.maxReplicas]"),
        (lambda s: s["model"].update(preset="aquila2-13b"), "unknown model preset 'aquila2-13b'; known presets: aquila2-7b"),
        (
            lambda s: s["hyperparameters"].update(globalBatchSize=0),
            "hyperparameters.globalBatchSize must be a positive number of sequences",
        ),
        (lambda s: s["hyperparameters"].update(globalBatchSize=-8), "globalBatchSize must be a positive number"),
        (
            lambda s: s.update(
                model={"preset": "debug", "config": {"dim": 64, "nLayers": 1, "nHeads": 4, "nKVHeads": 2, "ffnHiddenDim": 8}}
            ),
            "set exactly one of model.preset or model.config",
        ),
        (
            lambda s: s.update(model={"config": {"dim": 64, "nLayers": 1, "nHeads": 4, "nKVHeads": 3, "ffnHiddenDim": 8}}),
            "nHeads must be a multiple of nKVHeads",
        ),
        (lambda s: s["hyperparameters"].update(globalBatchSize=16), "must give every rank at least one sequence"),
        (lambda s: s["pools"][0].update(relativeThroughput=0), "relativeThroughput must be positive"),
        (lambda s: s["runPolicy"].update(restartMode="sometimes"), 'supported values: "gang", "elastic"'),
        (lambda s: s.update(tsm={"autoRollback": True}), "tsm.autoRollback needs tsm.url"),
    ],
)
def test_invalid_spec_is_rejected_with_a_readable_message(kube, a2j_crd, namespace, change, message):
    body = job(namespace=namespace)
    change(body["spec"])
    out = kube.kubectl("create", "-f", "-", input=yaml.safe_dump(body), check=False)
    assert out.returncode != 0, f"apiserver accepted an invalid job: {body['spec']}"
    assert message in out.stderr
    assert kube.kubectl("get", "a2j", "-n", namespace, "-o", "name").stdout.strip() == ""


def test_overlong_name_is_rejected(kube, a2j_crd, namespace):
    body = job(name="x" * 41, namespace=namespace)
    out = kube.kubectl("create", "-f", "-", input=yaml.safe_dump(body), check=False)
    assert out.returncode != 0 and "metadata.name must be at most 40 characters" in out.stderr


def test_example_manifests_are_valid_and_defaulted(kube, a2j_crd, namespace):
    for path in sorted((REPO / "deploy").glob("*.yaml")):
        bodies = [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "Aquila2TrainingJob"]
        if not bodies:
            continue  # the chart's values files live there too
        [body] = bodies  # tiny-demo.yaml carries its checkpoint claim as well
        body["metadata"]["namespace"] = namespace
        out = kube.kubectl("create", "--dry-run=server", "-o", "yaml", "-f", "-", input=yaml.safe_dump(body), check=False)
        assert out.returncode == 0, f"{path.name}: {out.stderr}"
        created = yaml.safe_load(out.stdout)
        assert created["spec"]["runPolicy"]["cleanPodPolicy"] in ("Running", "All", "None")
        assert created["spec"]["checkpoint"]["path"]


def test_defaults_are_applied(kube, a2j_crd, namespace):
    body = copy.deepcopy(job(namespace=namespace))
    del body["spec"]["runPolicy"], body["spec"]["checkpoint"], body["spec"]["nprocPerNode"]
    body["spec"]["hyperparameters"]["globalBatchSize"] = 64
    out = kube.kubectl("create", "--dry-run=server", "-o", "yaml", "-f", "-", input=yaml.safe_dump(body))
    spec = yaml.safe_load(out.stdout)["spec"]
    assert spec["nprocPerNode"] == 8
    assert spec["runPolicy"] == {
        "backoffLimit": 3,
        "maxRestarts": 3,
        "restartMode": "gang",
        "restartBackoffSeconds": 10,
        "cleanPodPolicy": "Running",
        "suspend": False,
    }
    assert spec["checkpoint"] == {"path": "/checkpoints", "intervalSteps": 500}
