"""The GPU MFU benchmark's argument handling and its tiny CPU path (the real run needs a GPU)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "trainer_gpu_mfu.py"


@pytest.fixture(scope="module")
def mfu():
    spec = importlib.util.spec_from_file_location("trainer_gpu_mfu", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_peak_table_matches_device_names(mfu):
    assert mfu.device_peak_tflops("NVIDIA H200") == pytest.approx(989.4)
    assert mfu.device_peak_tflops("NVIDIA H20") == pytest.approx(148.0)
    assert mfu.device_peak_tflops("NVIDIA H100 PCIe") == pytest.approx(756.0)
    assert mfu.device_peak_tflops("NVIDIA A100-SXM4-80GB") == pytest.approx(312.0)
    assert mfu.device_peak_tflops("Some Future GPU") is None


def test_flags_are_parsed_and_checked(mfu, capsys):
    opts = mfu.parse_args(["--layers", "2", "--seq-len", "512", "--batch", "3", "--compile"])
    assert (opts.layers, opts.seq_len, opts.batch, opts.compile) == (2, 512, 3, True)
    with pytest.raises(SystemExit):
        mfu.parse_args(["--batch", "0"])
    assert "--batch must be positive" in capsys.readouterr().err


def test_tiny_cpu_run_reports_mfu_against_the_given_peak(mfu, capsys):
    result = mfu.main(
        [
            "--device",
            "cpu",
            "--peak-tflops",
            "0.001",
            "--preset",
            "debug",
            "--layers",
            "1",
            "--seq-len",
            "16",
            "--batch",
            "1",
            "--steps",
            "1",
            "--warmup",
            "0",
        ]
    )
    out = capsys.readouterr().out
    assert "peak used: 0.0 TFLOP/s (dense bf16, from --peak-tflops)" in out and "MFU" in out
    assert result["peak_tflops"] == 0.001 and result["tflops_step"] > 0
    assert result["mfu_step"] == pytest.approx(result["tflops_step"] / 0.001)


def test_adaptive_mixture_bench_drives_the_products_trainer(tmp_path):
    """bench/tsm_adaptive_mixture.py steps heurimentor_trainer.train.Trainer; a few steps of it here."""
    spec = importlib.util.spec_from_file_location("tsm_adaptive_mixture", BENCH.parent / "tsm_adaptive_mixture.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from tsm_service.config import GuardrailConfig

    bench.write_sources(tmp_path, samples_per_source=40)
    run = bench.train_run(
        tmp_path,
        "learning_progress",
        seed=0,
        steps=4,
        batch=4,
        eval_every=2,
        val_samples=4,
        update_every=2,
        guardrails=GuardrailConfig(weight_floor=0.02, max_change=0.1, cooldown_steps=0),
        params={},
        target_sources=["easy", "bigram", "trigram"],
    )
    assert [step for step, _, _ in run["curve"]] == [0, 2, 4]
    assert all(0 < value < 10 for _, value, _ in run["curve"])
    assert run["mixtures"][0] == (0, {name: 0.25 for name in ["bigram", "easy", "random", "trigram"]})
