"""Checkpoints: exact round trip, atomic "latest", retention, refusal of another model shape."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest
import torch

from heurimentor_trainer.checkpoint import CheckpointError, CheckpointManager, TrainState
from heurimentor_trainer.model import build_model
from heurimentor_trainer.presets import get_preset
from heurimentor_trainer.train import main
from tests.trainer.testlib import base_config, make_sources, write_config

ARGS = get_preset("debug").model


def _trained(seed: int = 0):
    model = build_model(ARGS, seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randint(0, 512, (2, 8))).float().mean().backward()
    optimizer.step()
    return model, optimizer


def _state(step: int) -> TrainState:
    return TrainState(step=step, tokens_seen=step * 10, model_args=asdict(ARGS), sampler={"consumed": step})


def test_round_trip_restores_model_optimizer_and_rng(tmp_path):
    manager = CheckpointManager(tmp_path, keep=2)
    model, optimizer = _trained()
    torch.manual_seed(123)
    manager.save(1, model, optimizer, _state(1))
    expected_rng = torch.rand(3)
    fresh = build_model(ARGS, seed=99)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-3)
    folder = manager.latest()
    assert manager.read_state(folder, ARGS) == _state(1)
    manager.load(folder, fresh, fresh_opt, seed=0)
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    assert torch.equal(optimizer.state_dict()["state"][0]["exp_avg"], fresh_opt.state_dict()["state"][0]["exp_avg"])
    assert torch.equal(torch.rand(3), expected_rng)


def test_a_crash_mid_save_never_moves_latest_and_retention_keeps_the_newest(tmp_path):
    manager = CheckpointManager(tmp_path, keep=2)
    model, optimizer = _trained()
    for step in (2, 4):
        manager.save(step, model, optimizer, _state(step))
    # A crash while writing step 6: the partial folder exists, "latest" was never touched.
    partial = tmp_path / "step-00000006.partial"
    partial.mkdir()
    (partial / "__0_0.distcp").write_bytes(b"half")
    assert manager.latest() == tmp_path / "step-00000004"
    manager.save(8, model, optimizer, _state(8))
    manager.save(10, model, optimizer, _state(10))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step-00000008", "step-00000010"]
    assert (tmp_path / "latest").read_text() == "step-00000010"


def test_checkpoint_of_another_model_shape_is_refused_naming_the_fields(tmp_path):
    manager = CheckpointManager(tmp_path, keep=2)
    manager.save(1, *_trained(), _state(1))
    with pytest.raises(CheckpointError, match=r"dim=64 \(config has 128\).*n_heads=4 \(config has 8\)"):
        manager.read_state(manager.latest(), replace(ARGS, dim=128, n_heads=8))
    (tmp_path / "latest").write_text("step-00000077")
    with pytest.raises(CheckpointError, match="points to .*step-00000077"):
        manager.latest()


def test_trainer_refuses_to_resume_another_shape_before_any_work(tmp_path):
    config = base_config(tmp_path, make_sources(tmp_path / "shards"), steps=2)
    config["data"].pop("sample_log_dir")
    main(["--config", str(write_config(tmp_path / "a.yaml", config))])
    step_dir = tmp_path / "ckpt" / "step-00000002"
    before = {p.name: p.stat().st_mtime_ns for p in step_dir.iterdir()}
    config["model"] = {"dim": 128, "n_heads": 8}
    config["steps"] = 4
    with pytest.raises(SystemExit, match=r"model shape differs.*dim=64 \(config has 128\)"):
        main(["--config", str(write_config(tmp_path / "b.yaml", config))])
    assert {p.name: p.stat().st_mtime_ns for p in step_dir.iterdir()} == before
    assert json.loads((step_dir / "trainer_state.json").read_text())["step"] == 2
    assert (tmp_path / "ckpt" / "latest").read_text() == "step-00000002"
