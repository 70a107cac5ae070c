"""Hugging Face interop: a random GQA LlamaForCausalLM imports with identical logits and exports back."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from heurimentor_trainer.hf import INDEX_FILE, HFCheckpointError, inspect_hf_checkpoint, load_hf_checkpoint, save_hf_checkpoint
from heurimentor_trainer.model import ModelArgs
from tests.trainer.testlib_checkpoint import one_torch_thread  # noqa: F401 (autouse fixture)

SHAPE = dict(
    hidden_size=64,
    intermediate_size=160,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=300,
    max_position_embeddings=64,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
)


def random_llama(seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(**SHAPE, rope_parameters={"rope_type": "default", "rope_theta": 500.0})
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():  # HF initialises norms to 1; randomise them so a swapped norm would show
        for name, param in model.named_parameters():
            if "norm" in name:
                param.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def hf_model():
    return random_llama()


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(0, SHAPE["vocab_size"], (2, 40), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("shard_size", [None, "40KB"], ids=["single-file", "sharded"])
def test_import_matches_hf_logits(tmp_path, hf_model, tokens, shard_size):
    hf_model.save_pretrained(tmp_path, **({"max_shard_size": shard_size} if shard_size else {}))
    assert (tmp_path / INDEX_FILE).exists() == bool(shard_size)
    ours = load_hf_checkpoint(tmp_path).eval()
    assert ours.args.n_kv_heads == 2 and ours.args.rope_theta == 500.0
    with torch.no_grad():
        expected = hf_model(tokens).logits
        torch.testing.assert_close(ours(tokens), expected, atol=1e-5, rtol=0)


def test_export_loads_in_transformers_and_matches(tmp_path, hf_model, tokens):
    hf_model.save_pretrained(tmp_path / "in")
    ours = load_hf_checkpoint(tmp_path / "in").eval()
    written = save_hf_checkpoint(ours, tmp_path / "out", max_shard_bytes=60_000)
    assert (tmp_path / "out" / INDEX_FILE).exists() and len(written) > 2
    reloaded = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(tokens).logits, ours(tokens), atol=1e-5, rtol=0)
    # Every exported tensor is bit-identical to the original HF model's.
    original = hf_model.state_dict()
    exported = reloaded.state_dict()
    assert all(torch.equal(original[name], exported[name]) for name in original)


def test_checkpoint_of_another_shape_is_refused_before_loading(tmp_path, hf_model):
    hf_model.save_pretrained(tmp_path)
    expected = ModelArgs(dim=64, n_layers=2, n_heads=4, n_kv_heads=4, ffn_hidden_dim=160, vocab_size=300, rope_theta=500.0)
    with pytest.raises(HFCheckpointError, match="n_kv_heads=2 but the model expects n_kv_heads=4"):
        load_hf_checkpoint(tmp_path, expected=expected)
    with pytest.raises(HFCheckpointError, match="rope_theta=500.0 but the model expects rope_theta=10000.0"):
        load_hf_checkpoint(tmp_path, expected=replace(expected, n_kv_heads=2, rope_theta=10_000.0))
    loaded = load_hf_checkpoint(tmp_path, expected=replace(expected, n_kv_heads=2, max_seq_len=32))
    assert loaded.args.max_seq_len == 32 and loaded.rope.shape[1] == 32
    # A tensor whose shape disagrees with config.json is named.
    weights = load_file(tmp_path / "model.safetensors")
    weights["model.layers.1.mlp.up_proj.weight"] = torch.zeros(161, 64)
    save_file(weights, tmp_path / "model.safetensors")
    with pytest.raises(HFCheckpointError, match=r"'model.layers.1.mlp.up_proj.weight' has shape \[161, 64\], expected \[160, 64\]"):
        inspect_hf_checkpoint(tmp_path)
    del weights["model.layers.1.mlp.up_proj.weight"]
    save_file(weights, tmp_path / "model.safetensors")
    with pytest.raises(HFCheckpointError, match="'model.layers.1.mlp.up_proj.weight' is missing"):
        load_hf_checkpoint(tmp_path)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"tie_word_embeddings": True}, "tie_word_embeddings=True is not supported"),
        ({"num_key_value_heads": 3}, "n_kv_heads=3 does not divide n_heads=4"),
        ({"model_type": "gpt2"}, "model_type='gpt2'"),
        ({"hidden_size": None}, "hidden_size"),
    ],
)
def test_bad_config_names_the_field(tmp_path, hf_model, change, named):
    hf_model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config.update(change)
    if change.get("hidden_size", 0) is None:
        del config["hidden_size"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(HFCheckpointError, match=named):
        load_hf_checkpoint(tmp_path)


def test_not_a_checkpoint_directory(tmp_path):
    with pytest.raises(HFCheckpointError, match="no config.json"):
        load_hf_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", **SHAPE}))
    with pytest.raises(HFCheckpointError, match="no model.safetensors or model.safetensors.index.json"):
        load_hf_checkpoint(tmp_path)


def test_training_checkpoint_exports_to_hf(tmp_path, tokens):
    """A checkpoint written by the trainer's CheckpointManager (DCP) becomes a directory HF loads."""
    from dataclasses import asdict

    from typer.testing import CliRunner

    from heurimentor.cli import app
    from heurimentor_trainer.checkpoint import CheckpointManager, TrainState
    from heurimentor_trainer.model import build_model

    args = ModelArgs(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden_dim=160, vocab_size=300, max_seq_len=64)
    model = build_model(args, seed=3)
    optimizer = torch.optim.AdamW(model.parameters())
    CheckpointManager(tmp_path / "run", keep=2).save(7, model, optimizer, TrainState(step=7, model_args=asdict(args)))
    result = CliRunner().invoke(app, ["model", "export-hf", str(tmp_path / "run"), "--output", str(tmp_path / "hf")])
    assert result.exit_code == 0, result.output
    reloaded = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(tokens).logits, model(tokens), atol=1e-5, rtol=0)
    result = CliRunner().invoke(app, ["model", "export-hf", str(tmp_path), "--output", str(tmp_path / "x")])
    assert result.exit_code == 2 and "not a training checkpoint" in result.output
