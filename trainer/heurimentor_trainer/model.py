"""The Aquila2 model: a decoder-only transformer as the Aquila2 technical report describes it.

RMSNorm before attention and feed-forward, rotary position embeddings, grouped-query attention
(``n_kv_heads`` key/value heads shared by groups of query heads), a SwiGLU feed-forward, no
biases anywhere, and separate (untied) input embedding and output projection. Attention goes
through ``scaled_dot_product_attention`` so PyTorch picks the fused kernel for the device.

No distributed code lives here: parallelism (DDP/FSDP2), activation checkpointing and
``torch.compile`` are applied from outside by ``trainer.parallelize``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class ModelConfigError(ValueError):
    """A model configuration that cannot build a model; the message names the field."""


@dataclass
class ModelArgs:
    dim: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: int | None = None  # None means n_heads (multi-head attention)
    ffn_hidden_dim: int = 11008
    # 100,000 BPE tokens plus special tokens, padded to a multiple of 8 for efficient matmuls.
    vocab_size: int = 100_008
    max_seq_len: int = 2048
    norm_eps: float = 1e-5
    rope_theta: float = 10_000.0
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        for name in ("dim", "n_layers", "n_heads", "n_kv_heads", "ffn_hidden_dim", "vocab_size", "max_seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ModelConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.dim % self.n_heads:
            raise ModelConfigError(f"n_heads={self.n_heads} does not divide dim={self.dim}")
        if self.n_heads % self.n_kv_heads:
            raise ModelConfigError(f"n_kv_heads={self.n_kv_heads} does not divide n_heads={self.n_heads}")
        if (self.dim // self.n_heads) % 2:
            raise ModelConfigError(f"head dim {self.dim // self.n_heads} (dim/n_heads) must be even for rotary embeddings")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def num_params(self, *, exclude_embedding: bool = False) -> int:
        """Parameter count computed from the shape alone (no model needed)."""
        kv_dim = self.n_kv_heads * self.head_dim
        attention = self.dim * self.dim * 2 + self.dim * kv_dim * 2  # wq, wo, wk, wv
        feed_forward = 3 * self.dim * self.ffn_hidden_dim
        norms = 2 * self.dim
        per_layer = attention + feed_forward + norms
        embedding = self.vocab_size * self.dim
        output = self.vocab_size * self.dim
        total = self.n_layers * per_layer + self.dim + embedding + output
        return total - embedding if exclude_embedding else total

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token (forward + backward), as in the PaLM paper's appendix B:
        6 x non-embedding parameters, plus 12 x layers x dim x sequence length for attention scores."""
        seq_len = seq_len or self.max_seq_len
        return 6 * self.num_params(exclude_embedding=True) + 12 * self.n_layers * self.dim * seq_len


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One fused kernel. For bf16 inputs it accumulates the mean of squares in fp32 and rounds
        # once at the end: no fp32 copy of the activations, and no less accurate than Llama's
        # reference (upcast, normalise, round, then scale in bf16).
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)

    def init_weights(self) -> None:
        nn.init.ones_(self.weight)


def rope_cache(head_dim: int, max_seq_len: int, theta: float, device: torch.device | None = None) -> torch.Tensor:
    """cos and sin of every position x frequency, stacked: shape (2, max_seq_len, head_dim)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim))
    angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float32, device=device), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)  # the "rotate half" layout of Llama-format checkpoints
    return torch.stack([angles.cos(), angles.sin()])


def apply_rope(x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
    """Rotate (batch, seq, heads, head_dim) by position; ``rope`` is rope_cache()[:, :seq]."""
    cos, sin = rope[0, :, None].to(x.dtype), rope[1, :, None].to(x.dtype)
    first, second = x.chunk(2, dim=-1)
    rotated = torch.cat([-second, first], dim=-1)
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads = args.n_heads
        self.n_kv_heads = args.n_kv_heads
        self.head_dim = args.head_dim
        # Query, key and value projections fused into one matmul (rows: q heads, k heads, v heads);
        # trainer.hf splits it back into Llama's q_proj/k_proj/v_proj.
        self.wqkv = nn.Linear(args.dim, (args.n_heads + 2 * args.n_kv_heads) * self.head_dim, bias=False)
        self.wo = nn.Linear(args.n_heads * self.head_dim, args.dim, bias=False)

    def forward(self, x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        batch, seq, _ = x.shape
        qkv = self.wqkv(x).view(batch, seq, self.n_heads + 2 * self.n_kv_heads, self.head_dim)
        # Rotate queries and keys together: one set of rotary kernels instead of two.
        qk, v = qkv.split([self.n_heads + self.n_kv_heads, self.n_kv_heads], dim=2)
        q, k = apply_rope(qk, rope).transpose(1, 2).split([self.n_heads, self.n_kv_heads], dim=1)
        # Grouped-query attention: each key/value head serves n_heads / n_kv_heads query heads.
        out = F.scaled_dot_product_attention(q, k, v.transpose(1, 2), is_causal=True, enable_gqa=self.n_kv_heads != self.n_heads)
        return self.wo(out.transpose(1, 2).reshape(batch, seq, -1))

    def init_weights(self, std: float, out_std: float) -> None:
        nn.init.trunc_normal_(self.wqkv.weight, mean=0.0, std=std)
        nn.init.trunc_normal_(self.wo.weight, mean=0.0, std=out_std)


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x), with w1 (gate) and w3 (up) fused into one matmul ``w13``."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.w13 = nn.Linear(dim, 2 * hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.w13(x).chunk(2, dim=-1)
        return self.w2(F.silu(gate) * up)

    def init_weights(self, std: float, out_std: float) -> None:
        nn.init.trunc_normal_(self.w13.weight, mean=0.0, std=std)
        nn.init.trunc_normal_(self.w2.weight, mean=0.0, std=out_std)


class TransformerBlock(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.attention_norm = RMSNorm(args.dim, args.norm_eps)
        self.attention = Attention(args)
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps)
        self.feed_forward = FeedForward(args.dim, args.ffn_hidden_dim)

    def forward(self, x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), rope)
        return x + self.feed_forward(self.ffn_norm(x))

    def init_weights(self, std: float, out_std: float) -> None:
        self.attention_norm.init_weights()
        self.ffn_norm.init_weights()
        self.attention.init_weights(std, out_std)
        self.feed_forward.init_weights(std, out_std)


class Transformer(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim)
        # A ModuleDict keyed by layer index keeps checkpoint keys stable when layers are wrapped.
        self.layers = nn.ModuleDict({str(i): TransformerBlock(args) for i in range(args.n_layers)})
        self.norm = RMSNorm(args.dim, args.norm_eps)
        self.output = nn.Linear(args.dim, args.vocab_size, bias=False)
        # Not persistent: derived from the config, so it never goes into checkpoints.
        self.register_buffer("rope", rope_cache(args.head_dim, args.max_seq_len, args.rope_theta), persistent=False)

    def init_weights(self, buffer_device: torch.device | None = None) -> None:
        """Initialise every parameter in place: call after ``to_empty`` when built on ``meta``."""
        self.init_rope(buffer_device or self.tok_embeddings.weight.device)
        std = self.args.init_std
        # Residual output projections are scaled down with depth (GPT-2 / Megatron) so the
        # residual stream's variance does not grow with the number of layers.
        out_std = std / math.sqrt(2 * self.args.n_layers)
        nn.init.normal_(self.tok_embeddings.weight, mean=0.0, std=1.0)
        for layer in self.layers.values():
            layer.init_weights(std, out_std)
        self.norm.init_weights()
        cutoff = 3 * self.args.dim**-0.5
        nn.init.trunc_normal_(self.output.weight, mean=0.0, std=self.args.dim**-0.5, a=-cutoff, b=cutoff)

    def init_rope(self, device: torch.device | str) -> None:
        """(Re)compute the rotary table, e.g. after ``to_empty`` left it uninitialised."""
        self.rope = rope_cache(self.args.head_dim, self.args.max_seq_len, self.args.rope_theta, device=torch.device(device))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids (batch, seq) -> logits (batch, seq, vocab)."""
        seq = tokens.shape[1]
        if seq > self.args.max_seq_len:
            raise ValueError(f"sequence length {seq} exceeds max_seq_len={self.args.max_seq_len}")
        h = self.tok_embeddings(tokens)
        rope = self.rope[:, :seq]
        for layer in self.layers.values():
            h = layer(h, rope)
        return self.output(self.norm(h))


def build_model(args: ModelArgs, *, device: str | torch.device = "cpu", seed: int | None = None) -> Transformer:
    """Build on ``meta`` (no memory), then materialise on ``device`` and initialise.

    ``device="meta"`` returns the shape-only model: the 70B preset costs nothing to inspect.
    """
    with torch.device("meta"):
        model = Transformer(args)
    if torch.device(device).type == "meta":
        return model
    model.to_empty(device=device)
    if seed is not None:
        torch.manual_seed(seed)
    model.init_weights()
    return model
