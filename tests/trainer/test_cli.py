"""``heurimentor model|tokenizer|quantize``: output, and bad input as one clear line (exit code 2)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from heurimentor.cli import app
from tests.trainer.testlib_checkpoint import CORPUS, one_torch_thread, shared_tiny_checkpoint  # noqa: F401 (autouse fixture)

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_user_error(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())  # rich may wrap long lines
    assert "Traceback" not in result.output


def test_model_info_large_preset_counts_and_flops():
    result = invoke("model", "info", "--preset", "aquila2-34b")
    assert result.exit_code == 0, result.output
    assert "33,693,554,688 (33.69B)" in result.output
    assert "216,594,026,496" in result.output  # training FLOPs per token at 4096 tokens
    info = json.loads(invoke("model", "info", "--preset", "aquila2-70b", "--json", "--seq-len", "2048").output)
    assert info["parameters"] == 70_090_891_264 and info["kv_heads"] == 8 and info["flops_seq_len"] == 2048
    assert info["flops_per_token"] == 6 * info["non_embedding_parameters"] + 12 * 80 * 8192 * 2048


def test_model_info_unknown_preset():
    assert_user_error(
        invoke("model", "info", "--preset", "aquila2-13b"),
        "error: unknown preset 'aquila2-13b'; known presets: aquila2-7b, aquila2-34b, aquila2-70b",
    )


def test_tokenizer_train_prints_chars_per_token(tmp_path):
    result = invoke(
        "tokenizer",
        "train",
        "--en",
        CORPUS[0],
        "--zh",
        CORPUS[1],
        "--output",
        tmp_path / "tok",
        "--vocab-size",
        "800",
        "--ratio",
        "1:1",
        "--heldout-fraction",
        "0.1",
    )
    assert result.exit_code == 0, result.output
    assert "chars/token held-out EN" in result.output and "chars/token held-out ZH" in result.output
    assert (tmp_path / "tok" / "tokenizer.json").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ratio", "one:one"], "ratio 'one:one' is not of the form EN:ZH"),
        (["--vocab-size", "10"], "vocab_size=10 is too small"),
    ],
)
def test_tokenizer_train_bad_input(tmp_path, extra, message):
    result = invoke("tokenizer", "train", "--en", CORPUS[0], "--zh", CORPUS[1], "--output", tmp_path / "tok", *extra)
    assert_user_error(result, message)
    assert not (tmp_path / "tok").exists()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return shared_tiny_checkpoint(tmp_path_factory)


def test_quantize_run_and_eval_print_retained_perplexity(checkpoint, tmp_path):
    ckpt, tok = checkpoint
    result = invoke(
        "quantize",
        "run",
        ckpt,
        "--output",
        tmp_path / "int4",
        "--tokenizer",
        tok,
        "--method",
        "gptq",
        "--calibration",
        CORPUS[0],
        "--calibration",
        CORPUS[1],
        "--eval",
        CORPUS[1],
        "--seq-len",
        "64",
    )
    assert result.exit_code == 0, result.output
    assert "4.188 bits/weight" in result.output
    retained = float(result.output.split("retained:")[1].split("%")[0])
    assert 97 < retained < 103, result.output
    result = invoke("quantize", "eval", ckpt, tmp_path / "int4", "--tokenizer", tok, "--text", CORPUS[1], "--seq-len", "64")
    assert result.exit_code == 0, result.output
    assert f"retained: {retained:.2f} %" in result.output  # the same numbers from the saved int4 model


def test_quantize_refuses_bad_input_before_work(checkpoint, tmp_path):
    ckpt, tok = checkpoint
    out = tmp_path / "int4"
    common = ["--output", out, "--tokenizer", tok, "--eval", CORPUS[0]]
    assert_user_error(
        invoke("quantize", "run", ckpt, *common, "--method", "rtn", "--preset", "debug"),
        "checkpoint has dim=128 but the model expects dim=64",
    )
    assert_user_error(invoke("quantize", "run", ckpt, *common, "--method", "gptq"), "--method gptq needs --calibration")
    assert_user_error(invoke("quantize", "run", ckpt, *common, "--method", "awq9"), "--method 'awq9' is not one of rtn, gptq")
    assert_user_error(invoke("quantize", "run", ckpt, *common, "--method", "rtn", "--seq-len", "4096"), "--seq-len=4096 must be in 1..64")
    assert_user_error(invoke("quantize", "run", tmp_path, *common, "--method", "rtn"), "no config.json")
    assert_user_error(
        invoke("quantize", "run", ckpt, *common, "--method", "rtn", "--device", "gpu0"), "--device 'gpu0' is not a torch device"
    )
    assert not out.exists()


def test_check_hf_names_the_bad_field(checkpoint, tmp_path):
    ckpt, _ = checkpoint
    assert invoke("model", "check-hf", ckpt).exit_code == 0
    bad = tmp_path / "bad"
    bad.mkdir()
    config = json.loads((ckpt / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**config, "num_key_value_heads": 3}))
    (bad / "model.safetensors").symlink_to(ckpt / "model.safetensors")
    assert_user_error(invoke("model", "check-hf", bad), "n_kv_heads=3 does not divide n_heads=4")
    (bad / "config.json").write_text(json.dumps({**config, "intermediate_size": 512}))
    assert_user_error(
        invoke("model", "check-hf", bad), "tensor 'model.layers.0.mlp.gate_proj.weight' has shape [256, 128], expected [512, 128]"
    )
    (bad / "config.json").write_text(json.dumps({**config, "hidden_size": 130, "num_attention_heads": 4}))
    assert_user_error(invoke("model", "check-hf", bad), "n_heads=4 does not divide dim=130")
