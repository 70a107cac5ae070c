"""GPU path (opt-in, ``-m gpu`` on a lent GPU machine): FSDP2 + bf16 + compile + activation checkpointing.

Trains the tiny preset under torchrun on one GPU, resumes its step-4 DCP checkpoint (DTensor
shards) and checks the resumed losses and samples against the uninterrupted run.
"""

from __future__ import annotations

import copy
import shutil

import pytest
import torch

from tests.trainer.testlib import base_config, consumed_samples, log_records, make_sources, run_torchrun, step_losses, write_config

pytestmark = pytest.mark.gpu


def test_fsdp2_bf16_compiled_run_resumes_exactly(tmp_path, record_property):
    assert torch.cuda.is_available(), "this test needs a CUDA device"
    shards = make_sources(tmp_path / "shards", docs=200)
    config = base_config(
        tmp_path,
        shards,
        preset="tiny",
        steps=12,
        global_batch=32,
        micro_batch=8,
        seq_len=128,
        device="cuda",
        compile=True,
        activation_checkpointing=True,
        **{"checkpoint.keep": 10, "metrics.eval_interval": 4},
    )
    text = run_torchrun(write_config(tmp_path / "a.yaml", config), nproc=1, timeout=500)
    losses = step_losses(text)
    steps = [r for r in log_records(text, "step")]
    assert sorted(losses) == list(range(1, 13)) and all(0 < v < 20 for v in losses.values())
    assert losses[12] < losses[1]
    assert all("mfu" in r and r["grad_norm"] > 0 for r in steps)
    tps = sorted(r["global_tokens_per_second"] for r in steps[3:])[len(steps[3:]) // 2]
    print(f"tiny preset, 1 GPU, FSDP2+bf16+compile+AC: median {tps:,.0f} tokens/s, mfu {steps[-1]['mfu']:.4f}")
    record_property("gpu_tokens_per_second", tps)

    resumed = copy.deepcopy(config)
    ckpt = tmp_path / "ckpt2"
    ckpt.mkdir()
    shutil.copytree(tmp_path / "ckpt" / "step-00000004", ckpt / "step-00000004")
    (ckpt / "latest").write_text("step-00000004")
    resumed["checkpoint"]["dir"] = str(ckpt)
    resumed["data"]["sample_log_dir"] = str(tmp_path / "samples2")
    again = step_losses(run_torchrun(write_config(tmp_path / "b.yaml", resumed), nproc=1, timeout=500))
    worst = max(abs(again[s] - losses[s]) for s in again)
    print(f"GPU resume from step 4: loss max |diff| = {worst:.3g}")
    record_property("gpu_resume_loss_max_abs_diff", worst)
    assert sorted(again) == list(range(5, 13))
    assert worst < 2e-2  # bf16 kernels are not bit-reproducible across processes
    first = consumed_samples(tmp_path / "samples")
    assert consumed_samples(tmp_path / "samples2") == {s: first[s] for s in range(5, 13)}
