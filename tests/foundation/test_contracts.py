"""heurimentor.contracts is the one place a cross-process name or shape is written: each side's copy
is checked against it here (the CRD's preset lists, the trainer's table), and what one process
writes (pod env, progress annotation) is what the other reads."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from heurimentor.contracts import worker_env
from heurimentor.contracts.presets import PRESET_NAMES
from heurimentor.contracts.progress import ANNOTATION_PROGRESS, Progress, encode_progress, parse_progress

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "charts" / "heurimentor" / "crds" / "aquila2trainingjobs.heurimentor.io.yaml"


def crd_spec_schema() -> dict:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["served"]]
    return version["schema"]["openAPIV3Schema"]["properties"]["spec"]


def test_the_trainer_defines_exactly_the_contract_presets():
    from heurimentor_trainer.presets import PRESETS

    assert tuple(PRESETS) == PRESET_NAMES


def test_the_crd_lists_exactly_the_contract_presets():
    preset = crd_spec_schema()["properties"]["model"]["properties"]["preset"]
    (rule,) = preset["x-kubernetes-validations"]
    listed = ast.literal_eval(re.fullmatch(r"self in (\[.*\])", rule["rule"].strip()).group(1))
    assert tuple(listed) == PRESET_NAMES
    assert rule["messageExpression"].strip().endswith(f'known presets: {", ".join(PRESET_NAMES)}"')
    assert preset["description"] == f"One of: {', '.join(PRESET_NAMES)}."


def test_the_crd_knows_each_presets_maximum_sequence_length():
    from heurimentor_trainer.presets import PRESETS

    expected = {name: PRESETS[name].model.max_seq_len for name in PRESET_NAMES}
    texts = [r.get(k, "") for r in crd_spec_schema()["x-kubernetes-validations"] for k in ("rule", "message", "messageExpression")]
    maps = [ast.literal_eval(m) for text in texts for m in re.findall(r"\{'aquila2-7b'[^}]*\}", text)]
    assert maps and all(m == expected for m in maps), maps
    # A message that lists them ("aquila2-7b 2048, ...") lists the same.
    for text in texts:
        if "aquila2-7b 2048" in text:
            listed = dict(re.findall(r"([a-z0-9.-]+) (\d+)[,)]", text.split("preset's:")[-1]))
            assert {k: int(v) for k, v in listed.items()} == expected, text


def test_pod_env_the_operator_writes_is_what_the_trainer_reads():
    from heurimentor_operator.builders import build_pod
    from heurimentor_operator.spec import parse_job
    from heurimentor_trainer.config import PodEnv
    from tests.operator.testlib_manifests import job

    spec = parse_job(job())
    pod = build_pod(spec, spec.pools[0], 0, attempt=3, rollback_step=120, rollback_skip=(100, 119))
    (container,) = pod["spec"]["containers"]
    names = [e["name"] for e in container["env"]]
    contract = {v for k, v in vars(worker_env).items() if k.isupper()}
    assert contract <= set(names), contract - set(names)
    # The downward-API values, as the kubelet would fill them in.
    env = {e["name"]: e.get("value", "") for e in container["env"]}
    env.update({worker_env.POD_NAME: pod["metadata"]["name"], worker_env.POD_NAMESPACE: pod["metadata"]["namespace"]})
    read = PodEnv.from_env(env)
    assert (read.attempt, read.rollback_to_step, read.rollback_skip_steps) == ("3", 120, (100, 119))
    assert (read.pod_name, read.namespace) == (pod["metadata"]["name"], pod["metadata"]["namespace"])


@pytest.mark.parametrize("raw", ["100-119", " 100 - 119 "])
def test_step_ranges_round_trip(raw):
    assert worker_env.parse_step_range(raw) == (100, 119)
    assert worker_env.format_step_range(*worker_env.parse_step_range(raw)) == "100-119"


@pytest.mark.parametrize("raw", ["119-100", "100", "a-b", "-1-5", ""])
def test_bad_step_ranges_are_refused_with_the_value(raw):
    with pytest.raises(ValueError, match="is not FROM-TO"):
        worker_env.parse_step_range(raw)


def test_progress_the_trainer_encodes_is_what_the_operator_reads():
    sent = {"step": 6, "loss": 2.5, "mixtureVersion": 3, "tokens": 1152, "checkpoint": {"step": 6, "path": "/ckpt/step-00000006"}}
    raw = encode_progress(sent)
    assert parse_progress(raw) == sent
    assert Progress.model_validate_json(raw).mixture_version == 3
    # Strict JSON on the wire: a diverged loss travels as null.
    assert json.loads(encode_progress({"step": 7, "loss": float("nan")})) == {"step": 7, "loss": None}


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", '{"step": -1}', '{"checkpoint": {"step": 1}}'])
def test_unreadable_progress_is_refused_naming_the_annotation(raw):
    with pytest.raises(ValueError, match=re.escape(ANNOTATION_PROGRESS)):
        parse_progress(raw)


def test_importing_the_contracts_pulls_in_no_framework():
    # A fresh interpreter: what importing every contract loads, beyond the standard library.
    code = (
        "import pkgutil, sys, heurimentor.contracts as c\n"
        "for m in pkgutil.iter_modules(c.__path__): __import__(f'heurimentor.contracts.{m.name}')\n"
        "import heurimentor\n"
        "print(' '.join(sorted({n.split('.')[0] for n in sys.modules} - set(sys.stdlib_module_names))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout.split()
    # (httpx itself loads click and rich for its command line when they are installed: not ours to refuse.)
    heavy = {
        "torch",
        "fastapi",
        "starlette",
        "sqlalchemy",
        "kubernetes",
        "kopf",
        "yaml",
        "typer",
        "tokenizers",
        "heurimentor_trainer",
        "heurimentor_operator",
        "dmu_service",
        "tsm_service",
    }
    assert not heavy & set(out), out
    assert {"heurimentor", "pydantic", "numpy", "httpx"} <= set(out)
