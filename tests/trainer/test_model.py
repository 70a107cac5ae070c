"""The Aquila2 model: shapes, presets from the report's table, bad configs, causality, training."""

from __future__ import annotations

import resource

import pytest
import torch
import torch.nn.functional as F

from heurimentor_trainer.model import ModelArgs, ModelConfigError, Transformer, build_model
from heurimentor_trainer.presets import PRESETS, get_preset
from tests.trainer.testlib_checkpoint import one_torch_thread  # noqa: F401 (autouse fixture)


@pytest.mark.parametrize(("name", "billions"), [("aquila2-7b", 7), ("aquila2-34b", 34), ("aquila2-70b", 70)])
def test_large_presets_count_near_their_names_and_cost_no_memory(name, billions):
    args = get_preset(name).model
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = build_model(args, device="meta")
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert all(p.is_meta for p in model.parameters())
    assert grown_mib < 200, f"building {name} on meta grew RSS by {grown_mib:.0f} MiB"
    counted = sum(p.numel() for p in model.parameters())
    assert counted == args.num_params()
    assert abs(counted / 1e9 - billions) / billions < 0.06, counted
    # 6N plus attention: for 7B at 2048 tokens, ~4.45e10 FLOPs per token.
    assert 6 * args.num_params(exclude_embedding=True) < args.flops_per_token() < 7 * args.num_params()


def test_presets_carry_the_reports_table():
    rows = {
        name: (
            p.model.n_layers,
            p.model.dim,
            p.model.ffn_hidden_dim,
            p.model.n_heads,
            p.model.n_kv_heads,
            p.model.max_seq_len,
            p.lr,
            p.global_batch_size,
            p.model.vocab_size,
        )
        for name, p in PRESETS.items()
        if name.startswith("aquila2")
    }
    assert rows == {
        "aquila2-7b": (32, 4096, 11008, 32, 32, 2048, 2e-4, 1728, 100_008),
        "aquila2-34b": (60, 6144, 24576, 48, 8, 4096, 1.5e-4, 1024, 100_008),
        "aquila2-70b": (80, 8192, 28672, 64, 8, 4096, 1.5e-4, 1032, 100_008),
    }


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"dim": 100, "n_heads": 8}, "n_heads=8 does not divide dim=100"),
        ({"n_heads": 8, "n_kv_heads": 3}, "n_kv_heads=3 does not divide n_heads=8"),
        ({"n_layers": 0}, "n_layers"),
        ({"vocab_size": -5}, "vocab_size"),
    ],
)
def test_bad_configs_name_the_field(kwargs, named):
    with pytest.raises(ModelConfigError, match=named):
        ModelArgs(**{"dim": 64, "n_heads": 4, **kwargs})


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ModelConfigError, match="unknown preset 'aquila3'.*aquila2-7b"):
        get_preset("aquila3")
    with pytest.raises(ModelConfigError, match="n_kv_heads=3"):
        get_preset("debug", n_kv_heads=3)


def test_forward_is_causal_and_deterministic_by_seed():
    args = get_preset("debug").model
    model = build_model(args, seed=1)
    assert torch.equal(model.output.weight, build_model(args, seed=1).output.weight)
    tokens = torch.randint(0, args.vocab_size, (2, 16))
    logits = model(tokens)
    assert logits.shape == (2, 16, args.vocab_size)
    changed = tokens.clone()
    changed[:, 10] = (changed[:, 10] + 1) % args.vocab_size
    other = model(changed)
    torch.testing.assert_close(other[:, :10], logits[:, :10])
    assert not torch.allclose(other[:, 10:], logits[:, 10:])
    with pytest.raises(ValueError, match="exceeds max_seq_len=128"):
        model(torch.zeros(1, 129, dtype=torch.long))


def test_gqa_attention_matches_a_naive_reference():
    """One block's attention, recomputed by hand with key/value heads repeated (no SDPA)."""
    args = ModelArgs(dim=32, n_layers=1, n_heads=4, n_kv_heads=2, ffn_hidden_dim=64, vocab_size=50, max_seq_len=16)
    model = build_model(args, seed=0)
    attention, x, seq = model.layers["0"].attention, torch.randn(2, 8, 32), 8
    rope = model.rope[:, :seq]
    q, k, v = attention.wqkv(x).split([32, 16, 16], dim=-1)

    def rotate(t, heads):
        t = t.view(2, seq, heads, 8).transpose(1, 2)
        cos, sin = rope[0], rope[1]
        return t * cos + torch.cat([-t[..., 4:], t[..., :4]], dim=-1) * sin

    q, k = rotate(q, 4), rotate(k, 2).repeat_interleave(2, dim=1)
    v = v.view(2, seq, 2, 8).transpose(1, 2).repeat_interleave(2, dim=1)
    scores = (q @ k.transpose(-1, -2)) / 8**0.5
    scores = scores.masked_fill(torch.ones(seq, seq, dtype=torch.bool).triu(1), float("-inf"))
    expected = attention.wo((scores.softmax(-1) @ v).transpose(1, 2).reshape(2, seq, 32))
    torch.testing.assert_close(attention(x, rope), expected, atol=1e-5, rtol=1e-5)


def test_tiny_model_learns_a_batch():
    torch.manual_seed(0)
    args = get_preset("debug").model
    model = build_model(args, seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = torch.randint(0, args.vocab_size, (2, 17))
    losses = []
    for _ in range(25):
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(torch.log(torch.tensor(float(args.vocab_size))).item(), rel=0.1)
    assert losses[-1] < 0.5 * losses[0]


def test_meta_model_materialises_with_rope_on_device():
    args = get_preset("debug").model
    model = build_model(args, device="meta")
    assert isinstance(model, Transformer)
    model.to_empty(device="cpu")
    model.init_weights()
    assert torch.isfinite(model.rope).all() and model.rope.shape == (2, args.max_seq_len, args.head_dim)
    assert torch.isfinite(model(torch.zeros(1, 4, dtype=torch.long))).all()
