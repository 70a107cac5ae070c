"""Int4 group-wise quantization: packing, error bounds, GPTQ vs RTN, a trained model's perplexity."""

from __future__ import annotations

import pytest
import torch

from heurimentor_trainer.hf import load_hf_checkpoint
from heurimentor_trainer.quantize import (
    Int4Linear,
    QuantizationError,
    load_quantized,
    pack_int4,
    perplexity,
    quantize_gptq,
    quantize_model,
    quantize_rtn,
    save_quantized,
    token_windows,
    unpack_int4,
)
from heurimentor_trainer.tokenizer import encode_files, load_tokenizer
from tests.trainer.testlib_checkpoint import CORPUS, one_torch_thread, shared_tiny_checkpoint  # noqa: F401 (autouse fixture)


def test_pack_unpack_round_trip():
    codes = torch.randint(0, 16, (7, 256), dtype=torch.uint8)
    packed = pack_int4(codes)
    assert packed.shape == (7, 128) and packed.dtype == torch.uint8
    assert torch.equal(unpack_int4(packed), codes)


def test_rtn_error_within_half_a_step_and_packed_size():
    torch.manual_seed(0)
    weight = torch.randn(16, 300) * 0.05  # 300 = two full groups and a ragged one
    weight[3, 17] = 0.0
    layer = Int4Linear.from_packed(quantize_rtn(weight), in_features=300, group_size=128)
    assert layer.qweight.shape == (16, 192) and layer.scales.shape == (16, 3) and layer.zeros.shape == (16, 3)
    assert layer.storage_bytes() == 16 * 192 + 16 * 3 * 2 + 16 * 3
    restored = layer.weight()
    step = layer.scales.float().repeat_interleave(128, dim=1)[:, :300]
    assert ((restored - weight).abs() <= step / 2 + 1e-6).all()
    assert restored[3, 17] == 0.0  # the grid always holds zero exactly
    x = torch.randn(4, 300)
    torch.testing.assert_close(layer(x), x @ restored.T)


def test_gptq_beats_rtn_on_correlated_inputs():
    torch.manual_seed(0)
    mixing = torch.randn(256, 256) / 16
    x = torch.randn(2048, 256) @ mixing + 0.1 * torch.randn(2048, 256)  # strongly correlated features
    weight = torch.randn(64, 256) * 0.05
    hessian = 2 * x.T @ x / x.shape[0]

    def output_error(packed):
        deq = Int4Linear.from_packed(packed, 256, 128).weight()
        return ((x @ weight.T - x @ deq.T).norm() / (x @ weight.T).norm()).item()

    rtn, gptq = output_error(quantize_rtn(weight)), output_error(quantize_gptq(weight, hessian))
    assert gptq < 0.8 * rtn, (gptq, rtn)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    checkpoint, tokenizer_dir = shared_tiny_checkpoint(tmp_path_factory)
    windows = token_windows(encode_files(load_tokenizer(tokenizer_dir), CORPUS), 64)
    return checkpoint, windows


@pytest.mark.parametrize("method", ["rtn", "gptq"])
def test_trained_model_keeps_its_perplexity(trained, tmp_path, method):
    checkpoint, windows = trained
    reference = perplexity(load_hf_checkpoint(checkpoint), windows)
    model = load_hf_checkpoint(checkpoint)
    summary = quantize_model(model, method=method, calibration=windows[:32, :-1])
    # 2 blocks x (wqkv, wo, w13, w2), in-features multiples of 128: 4 + (16 + 8) / 128 bits per weight.
    assert summary.layers == 8 and summary.bits_per_weight == pytest.approx(4.1875)
    assert summary.storage_bytes == pytest.approx(summary.weights * 4.1875 / 8)
    assert 0 < summary.mean_relative_error < 0.2
    quantized = perplexity(model, windows)
    assert reference < 200  # it did learn the corpus (uniform would be ~vocab size)
    assert reference / quantized > 0.97, (reference, quantized)

    save_quantized(model, tmp_path, summary)
    stored = (tmp_path / "model.safetensors").stat().st_size
    fp32_blocks = summary.weights * 4
    assert stored < (load_hf_checkpoint(checkpoint).args.num_params() * 4) - 0.8 * fp32_blocks  # blocks shrank ~7.6x
    reloaded = load_quantized(tmp_path)
    assert isinstance(reloaded.layers["0"].attention.wqkv, Int4Linear)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(windows[:2, :-1]), model(windows[:2, :-1]))


def test_bad_requests_are_refused(trained, tmp_path):
    checkpoint, _ = trained
    model = load_hf_checkpoint(checkpoint)
    with pytest.raises(QuantizationError, match="unknown method 'awq4'"):
        quantize_model(model, method="awq4")
    with pytest.raises(QuantizationError, match="GPTQ needs calibration tokens"):
        quantize_model(model, method="gptq")
    with pytest.raises(QuantizationError, match="group_size=7"):
        quantize_model(model, method="rtn", group_size=7)
    assert isinstance(model.layers["0"].attention.wqkv, torch.nn.Linear)  # untouched
    with pytest.raises(QuantizationError, match="no quantization.json"):
        load_quantized(checkpoint)
    with pytest.raises(QuantizationError, match="too few for one window"):
        token_windows([1, 2, 3], 64)
