"""Training config: precedence file < env < CLI, clear errors naming the field, batch splitting."""

from __future__ import annotations

import pytest
import yaml

from heurimentor_trainer.config import ConfigError, load_config, parse_args
from heurimentor_trainer.train import lr_at, micro_batches, plan_batch_split


def _file(tmp_path, body: dict):
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def test_precedence_is_file_then_env_then_cli(tmp_path):
    path = _file(tmp_path, {"steps": 10, "optim": {"lr": 1e-3, "warmup_steps": 5}, "data": {"shard_root": "/data"}})
    env = {"HEURIMENTOR_TRAIN__OPTIM__LR": "2e-3", "HEURIMENTOR_TRAIN__SEED": "11", "UNRELATED": "x"}
    cfg = load_config(path, ["optim.lr=3e-3", "data.static_weights={en: 2, zh: 1}"], environ=env)
    assert (cfg.steps, cfg.optim.warmup_steps, cfg.seed) == (10, 5, 11)
    assert cfg.optim.lr == 3e-3
    assert cfg.data.static_weights == {"en": 2.0, "zh": 1.0}
    assert load_config(path, environ=env).optim.lr == 2e-3
    assert load_config(path, environ={}).optim.lr == 1e-3


def test_parse_args_reads_the_mounted_file_path_and_flags(tmp_path):
    path = _file(tmp_path, {"job": "j1", "preset": "tiny", "data": {"shard_root": "/s"}})
    cfg = parse_args(["--config", str(path), "--set", "micro_batch=4", "--set", "checkpoint.keep=5"])
    assert (cfg.job, cfg.preset, cfg.micro_batch, cfg.checkpoint.keep) == ("j1", "tiny", 4, 5)


@pytest.mark.parametrize(
    "body, overrides, message",
    [
        ({"optim": {"beta": 0.9}}, [], "unknown field optim.beta"),
        ({"stepz": 3}, [], "unknown field stepz"),
        ({"steps": "ten"}, [], "steps must be int"),
        ({"steps": 0}, [], "steps must be > 0"),
        ({"relative_throughput": 0}, [], "relative_throughput must be > 0"),
        ({}, ['data.shard_root=""'], "data.shard_root is required"),
        ({"data": {"mixture": "m"}}, [], "needs data.dmu_url"),
        ({"data": {"static_weights": {"en": -1}}}, [], "static_weights['en'] must be >= 0"),
        ({"optim": 3}, [], "optim must be a mapping"),
        ({}, ["steps"], "must look like section.field=value"),
    ],
)
def test_bad_config_is_refused_naming_the_field(tmp_path, body, overrides, message):
    body = {"data": {"shard_root": "/s", **body.pop("data", {})}, **body}
    with pytest.raises(ConfigError) as info:
        load_config(_file(tmp_path, body), overrides, environ={})
    assert message in str(info.value)


def test_missing_or_broken_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml", environ={})
    broken = tmp_path / "broken.yaml"
    broken.write_text("steps: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken, environ={})


def test_global_batch_is_split_over_ranks_and_must_divide():
    cfg = load_config(None, ["data.shard_root=/s", "micro_batch=2"], environ={})
    assert plan_batch_split(cfg, 12, 2) == [6, 6]
    assert plan_batch_split(cfg, 12, 3) == [4, 4, 4]
    assert plan_batch_split(cfg, 12, 1) == [12]
    with pytest.raises(ConfigError, match=r"global_batch=12 .* micro_batch=2 over world_size=4"):
        plan_batch_split(cfg, 12, 4)


def test_cosine_schedule_warms_up_then_decays_to_the_floor():
    kw = {"base": 1.0, "warmup": 10, "total": 110, "min_ratio": 0.1}
    assert lr_at(5, **kw) == pytest.approx(0.5)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(60, **kw) == pytest.approx(0.55)
    assert lr_at(110, **kw) == pytest.approx(0.1)
    assert lr_at(500, **kw) == pytest.approx(0.1)


def test_every_rank_runs_as_many_micro_batches_as_the_largest():
    # Homogeneous: micro batches of micro_batch rows, as before.
    assert micro_batches([6, 6], 1, 2) == [(slice(0, 2), 1.0), (slice(2, 4), 1.0), (slice(4, 6), 1.0)]
    # Heterogeneous (9 and 3 rows, micro 3): the small rank runs three micro batches of one row.
    assert micro_batches([9, 3], 1, 3) == [(slice(0, 1), 1.0), (slice(1, 2), 1.0), (slice(2, 3), 1.0)]
    # Fewer rows than passes: the last row again, with weight 0 (collectives only).
    assert micro_batches([7, 6], 1, 1)[-1] == (slice(5, 6), 0.0)
    assert [s.stop - s.start for s, w in micro_batches([7, 6], 1, 1) if w] == [1] * 6
