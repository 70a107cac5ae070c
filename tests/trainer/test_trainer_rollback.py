"""Rollback (HEURIMENTOR_ROLLBACK_TO_STEP, set by the operator for one attempt): resume from the newest
checkpoint at or before the step, newer checkpoints moved aside (never deleted), the data after the
checkpoint replayed exactly, and applied once per attempt (a torchrun restart does not roll back again)."""

from __future__ import annotations

import json

import pytest

from heurimentor_trainer.checkpoint import CheckpointManager
from heurimentor_trainer.train import main
from tests.trainer.testlib import base_config, consumed_samples, log_records, make_sources, run_torchrun, step_losses, write_config


def run(tmp_path, config, capfd) -> str:
    main(["--config", str(write_config(tmp_path / "train.yaml", config))])
    return capfd.readouterr().err


def test_rollback_resumes_before_the_step_replays_the_data_and_applies_once(tmp_path, monkeypatch, capfd):
    config = base_config(tmp_path, make_sources(tmp_path / "shards"), steps=8, **{"checkpoint.interval": 2, "checkpoint.keep": 10})
    first = step_losses(run(tmp_path, config, capfd))
    first_samples = consumed_samples(tmp_path / "samples")
    ckpt = tmp_path / "ckpt"
    states_before = {p.name: (p / "trainer_state.json").read_text() for p in ckpt.glob("step-*")}
    assert sorted(states_before) == ["step-00000002", "step-00000004", "step-00000006", "step-00000008"]

    # Attempt 1 rolls back to step 5 and is interrupted after step 6 (stop_at_step ends the launch after a checkpoint).
    monkeypatch.setenv("HEURIMENTOR_ROLLBACK_TO_STEP", "5")
    monkeypatch.setenv("HEURIMENTOR_ATTEMPT", "1")
    logs = run(tmp_path, {**config, "stop_at_step": 6}, capfd)
    [rolled] = log_records(logs, "rolling back")
    assert (rolled["to_step"], rolled["resume_from"], rolled["moved"]) == (5, "step-00000004", ["step-00000006", "step-00000008"])
    assert log_records(logs, "training")[0]["resumed_at"] == 4
    aside = ckpt / rolled["moved_to"]
    assert aside.name.startswith("rolled-back-")
    # Moved, not deleted: the rolled-back checkpoints are intact.
    assert {p.name: (p / "trainer_state.json").read_text() for p in aside.iterdir()} == {
        name: states_before[name] for name in ("step-00000006", "step-00000008")
    }
    assert (ckpt / "step-00000004" / "trainer_state.json").read_text() == states_before["step-00000004"]
    replay = step_losses(logs)
    assert sorted(replay) == [5, 6]

    # torchrun restarts the workers of the same attempt (same env): they resume at 6, no second rollback.
    logs = run(tmp_path, config, capfd)
    assert not log_records(logs, "rolling back")
    assert log_records(logs, "training")[0]["resumed_at"] == 6
    replay |= step_losses(logs)
    # The sampler state came with the checkpoint: steps 5..8 train on the same samples with the same losses.
    assert replay == pytest.approx({s: first[s] for s in (5, 6, 7, 8)}, rel=1e-5)
    assert {s: v for s, v in consumed_samples(tmp_path / "samples").items() if s >= 5} == {s: first_samples[s] for s in (5, 6, 7, 8)}
    records = json.loads((ckpt / "rollbacks.json").read_text())
    assert [(r["request"], r["resume_from"]) for r in records] == [("attempt 1: step 5", "step-00000004")]
    assert (ckpt / "latest").read_text() == "step-00000008"


def _fake_checkpoint(folder, step):
    path = folder / f"step-{step:08d}"
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text(json.dumps({"step": step}))


def test_rollback_before_the_first_checkpoint_starts_over_and_keeps_everything(tmp_path):
    for step in (10, 20):
        _fake_checkpoint(tmp_path, step)
    (tmp_path / "latest").write_text("step-00000020")
    manager = CheckpointManager(tmp_path, keep=3)
    assert manager.rollback(5, request="attempt 2: step 5") is None
    assert manager.latest() is None  # training starts at step 0
    [aside] = tmp_path.glob("rolled-back-*")
    assert sorted(p.name for p in aside.iterdir()) == ["step-00000010", "step-00000020"]
    # An exact step is "at or before"; the same request again changes nothing.
    _fake_checkpoint(tmp_path, 30)
    (tmp_path / "latest").write_text("step-00000030")
    assert manager.rollback(5, request="attempt 2: step 5") == tmp_path / "step-00000030"
    assert len(list(tmp_path.glob("rolled-back-*"))) == 1


@pytest.mark.parametrize("value", ["abc", "-3", "1.5"])
def test_a_bad_rollback_step_is_refused_before_any_work(tmp_path, monkeypatch, value):
    config = base_config(tmp_path, make_sources(tmp_path / "shards"), steps=2)
    monkeypatch.setenv("HEURIMENTOR_ROLLBACK_TO_STEP", value)
    with pytest.raises(SystemExit, match=rf"HEURIMENTOR_ROLLBACK_TO_STEP='{value}' is not a step number"):
        main(["--config", str(write_config(tmp_path / "train.yaml", config))])
    assert not (tmp_path / "ckpt").exists()


def test_rollback_skips_the_named_data_range_once(tmp_path, monkeypatch, capfd):
    config = base_config(tmp_path, make_sources(tmp_path / "shards"), steps=10, **{"checkpoint.interval": 2, "checkpoint.keep": 10})
    run(tmp_path, config, capfd)
    first = consumed_samples(tmp_path / "samples")
    # The TSM's recommendation: resume at or before 5, skip the data of steps 5..6 (the spike's batches).
    monkeypatch.setenv("HEURIMENTOR_ROLLBACK_TO_STEP", "5")
    monkeypatch.setenv("HEURIMENTOR_ROLLBACK_SKIP_STEPS", "5-6")
    monkeypatch.setenv("HEURIMENTOR_ATTEMPT", "1")
    logs = run(tmp_path, {**config, "stop_at_step": 6}, capfd)
    [skipped] = log_records(logs, "skipping data")
    assert (skipped["at_step"], skipped["skipped_batches"]) == (5, 2)
    # A restart of the same attempt resumes at 6, after the skip: it is not skipped twice.
    logs = run(tmp_path, config, capfd)
    assert not log_records(logs, "skipping data") and log_records(logs, "training")[0]["resumed_at"] == 6
    after = consumed_samples(tmp_path / "samples")
    # Steps 5.. train on what the first run trained on from step 7 on; steps 5 and 6's samples are never seen.
    assert [after[s] for s in (5, 6, 7, 8)] == [first[s] for s in (7, 8, 9, 10)]
    seen = {i for s in range(5, 11) for i in after[s]}
    assert not seen & {i for s in (5, 6) for i in first[s]} - {i for s in range(7, 11) for i in first[s]}
    state = json.loads((tmp_path / "ckpt" / "step-00000010" / "trainer_state.json").read_text())
    assert state["data_skips"] == ["attempt 1: steps 5-6"]


def test_a_skip_range_needs_a_rollback_step(tmp_path, monkeypatch):
    config = base_config(tmp_path, make_sources(tmp_path / "shards"), steps=2)
    monkeypatch.setenv("HEURIMENTOR_ROLLBACK_SKIP_STEPS", "5-6")
    with pytest.raises(
        SystemExit, match="HEURIMENTOR_ROLLBACK_SKIP_STEPS='5-6': expected FROM-TO .* together with HEURIMENTOR_ROLLBACK_TO_STEP"
    ):
        main(["--config", str(write_config(tmp_path / "train.yaml", config))])


def test_two_ranks_under_torchrun_roll_back_together(tmp_path, monkeypatch):
    """Rank 0 moves the checkpoints; rank 1 reads "latest" only after it (a barrier), both resume at 2."""
    config = base_config(tmp_path, make_sources(tmp_path / "shards"), steps=6, **{"checkpoint.interval": 2, "checkpoint.keep": 10})
    path = write_config(tmp_path / "train.yaml", config)
    first = step_losses(run_torchrun(path, nproc=2))
    monkeypatch.setenv("HEURIMENTOR_ROLLBACK_TO_STEP", "3")
    monkeypatch.setenv("HEURIMENTOR_ATTEMPT", "1")
    logs = run_torchrun(path, nproc=2)
    assert sorted((r["rank"], r["resumed_at"]) for r in log_records(logs, "training")) == [(0, 2), (1, 2)]
    assert len(log_records(logs, "rolling back")) == 1
    assert step_losses(logs) == pytest.approx({s: first[s] for s in (3, 4, 5, 6)}, rel=1e-5)
