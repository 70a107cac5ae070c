"""Model size presets: the Aquila2 report's table, plus tiny ones a CPU trains in seconds."""

from __future__ import annotations

from dataclasses import dataclass, replace

from heurimentor_trainer.model import ModelArgs, ModelConfigError


@dataclass(frozen=True)
class Preset:
    model: ModelArgs
    lr: float
    global_batch_size: int  # sequences per optimizer step


PRESETS: dict[str, Preset] = {
    # The report's table: layers, hidden, FFN, heads, kv heads, max length, LR, global batch.
    "aquila2-7b": Preset(
        ModelArgs(dim=4096, n_layers=32, n_heads=32, n_kv_heads=32, ffn_hidden_dim=11008, max_seq_len=2048), lr=2e-4, global_batch_size=1728
    ),
    "aquila2-34b": Preset(
        ModelArgs(dim=6144, n_layers=60, n_heads=48, n_kv_heads=8, ffn_hidden_dim=24576, max_seq_len=4096),
        lr=1.5e-4,
        global_batch_size=1024,
    ),
    "aquila2-70b": Preset(
        ModelArgs(dim=8192, n_layers=80, n_heads=64, n_kv_heads=8, ffn_hidden_dim=28672, max_seq_len=4096),
        lr=1.5e-4,
        global_batch_size=1032,
    ),
    # Tiny GQA models with the same architecture, for CI and the demo (vocab set by the tokenizer).
    "debug": Preset(
        ModelArgs(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden_dim=176, vocab_size=512, max_seq_len=128),
        lr=1e-3,
        global_batch_size=8,
    ),
    "tiny": Preset(
        ModelArgs(dim=256, n_layers=4, n_heads=8, n_kv_heads=2, ffn_hidden_dim=688, vocab_size=4096, max_seq_len=256),
        lr=1e-3,
        global_batch_size=16,
    ),
}


def get_preset(name: str, **overrides) -> Preset:
    """The named preset, with model fields overridden (e.g. ``vocab_size`` from the tokenizer)."""
    try:
        preset = PRESETS[name]
    except KeyError:
        raise ModelConfigError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}") from None
    return replace(preset, model=replace(preset.model, **overrides)) if overrides else preset
