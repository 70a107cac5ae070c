"""The Trainer's setup: the model is built on ``meta``, parallelized, then materialised.

Sharded with FSDP2 (gloo on CPU, real torchrun ranks), each rank's peak memory is about 1/world of
the whole model's; the 34B and 70B presets construct on ``meta`` with the report's parameter
counts; a single-process Trainer starts from the same weights ``build_model`` gives and its
checkpoint holds exactly its ``TrainState``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict

import pytest
import torch

from heurimentor.contracts.metrics import StepPoint
from heurimentor_trainer.checkpoint import CheckpointManager, TrainState
from heurimentor_trainer.config import load_config
from heurimentor_trainer.model import build_model
from heurimentor_trainer.presets import get_preset
from heurimentor_trainer.train import Trainer
from tests.trainer.testlib import REPO, base_config, log_records, make_sources, worker_env

WORKER = REPO / "tests" / "trainer" / "sharded_memory.py"
WORLD = 4


def _memory_runs(command: list[str]) -> list[dict]:
    # glibc raises its mmap threshold after the first large free, and then keeps freed all-gather
    # buffers in the heap: the resident size would count memory that is free. A fixed threshold
    # returns them, so the peak is what the rank really held.
    env = worker_env(MALLOC_MMAP_THRESHOLD_="131072")
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-5000:]
    return _json_records(result.stdout)


def _json_records(text: str) -> list[dict]:
    # Ranks share one stdout and print's text and newline can be two writes: two records can share
    # a line (`{"rank": 0, ...}{"rank": 2, ...}`).
    decoder, records, position = json.JSONDecoder(), [], text.find('{"rank"')
    while position != -1:
        record, end = decoder.raw_decode(text, position)
        records.append(record)
        position = text.find('{"rank"', end)
    return records


def test_a_sharded_model_costs_each_rank_about_one_over_world_of_the_whole(record_property):
    [whole] = _memory_runs([sys.executable, str(WORKER)])
    sharded = _memory_runs([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={WORLD}", str(WORKER)])
    assert sorted(r["rank"] for r in sharded) == list(range(WORLD))
    assert whole["local_params"] == whole["total_params"] > 60e6
    for rank in sharded:
        assert rank["local_params"] * WORLD == pytest.approx(rank["total_params"], rel=1e-3)
        ratio = rank["grown_mib"] / whole["grown_mib"]
        record_property(f"peak_memory_ratio_rank{rank['rank']}", ratio)
        print(
            f"rank {rank['rank']}/{WORLD}: peak grew {rank['grown_mib']:.0f} MiB vs {whole['grown_mib']:.0f} MiB unsharded "
            f"(ratio {ratio:.3f}, 1/world = {1 / WORLD:.3f})"
        )
        # Parameters, gradients and AdamW state are sharded; one block's all-gather is the rest.
        assert ratio < 1.25 / WORLD


@pytest.mark.parametrize(("name", "billions"), [("aquila2-34b", 33.69), ("aquila2-70b", 70.09)])
def test_large_presets_construct_on_meta_with_the_reports_parameter_count(name, billions):
    args = get_preset(name).model
    model = build_model(args, device="meta")
    assert all(p.is_meta for p in model.parameters())
    counted = sum(p.numel() for p in model.parameters())
    assert counted == args.num_params()
    assert round(counted / 1e9, 2) == billions


@pytest.fixture
def trainer(tmp_path):
    config = base_config(tmp_path, make_sources(tmp_path / "shards"), steps=3)
    (tmp_path / "train.yaml").write_text(json.dumps(config))
    with Trainer(load_config(tmp_path / "train.yaml", environ={})) as trainer:
        yield trainer


def test_meta_built_trainer_starts_from_the_seeded_weights_and_steps(trainer):
    reference = build_model(trainer.args, seed=trainer.cfg.seed)
    for (name, ours), theirs in zip(trainer.model.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(ours, theirs), name
    point = trainer.train_step()
    assert isinstance(point, StepPoint) and point.step == trainer.state.step == 1
    assert point.scalars["loss"] > 0 and point.scalars["batch_rows"] == 12
    assert set(point.source_losses) == {"en", "zh", "code"}
    assert trainer.state.tokens_seen == 12 * 16
    # The per-source sums a mixture policy reads add up to the step's loss.
    loss = sum(s for s, _ in trainer.source_sums.values()) / sum(n for _, n in trainer.source_sums.values())
    assert loss == pytest.approx(point.scalars["loss"])


def test_a_checkpoint_holds_exactly_the_train_state(trainer):
    trainer.train_step()
    trainer.save_checkpoint()
    folder = trainer.manager.latest()
    saved = CheckpointManager(folder.parent, keep=2).read_state(folder, trainer.args)
    assert isinstance(saved, TrainState) and saved == trainer.state
    assert json.loads((folder / "trainer_state.json").read_text()) == asdict(trainer.state)
    assert saved.step == 1 and saved.sampler["consumed"] == 12 and saved.lr_schedule["total"] == 3


def test_sharded_ranks_with_unequal_rows_step_together(tmp_path):
    """FSDP2 (gloo on CPU) with 13 rows over 2 ranks: 7 and 6. Each micro batch all-gathers every
    block, so before every rank ran the largest rank's count of micro batches this run timed out in
    a collective; now it trains, checkpoints its DTensor shards and reports every step."""
    from tests.trainer.testlib import run_torchrun, step_losses, write_config

    config = base_config(
        tmp_path, make_sources(tmp_path / "shards"), steps=3, global_batch=13, micro_batch=1, fsdp=True, **{"metrics.eval_interval": 1000}
    )
    text = run_torchrun(write_config(tmp_path / "train.yaml", config), nproc=2, nnodes="1:2", timeout=400)
    training = {r["rank"]: r for r in log_records(text, "training")}
    assert {r: (t["rows"], t["accumulation"]) for r, t in training.items()} == {0: (7, 7), 1: (6, 7)}
    assert sorted(step_losses(text)) == [1, 2, 3]
    assert (tmp_path / "ckpt" / "latest").read_text() == "step-00000003"
