"""Int4 weight-only quantization of a trained model: group-wise, packed, RTN or GPTQ.

Every linear layer inside the transformer blocks is stored as 4-bit codes, two per byte, with one
fp16 scale and one uint8 zero point per group of ``group_size`` (128) input weights:
4 + (16 + 8) / 128 = 4.19 bits per weight. Embeddings, norms and the output head stay in full
precision (as GPTQ/AWQ releases do: the head is small next to the blocks and most sensitive).

- RTN rounds each weight to the nearest level of its group's grid.
- GPTQ (Frantar et al., 2022) quantizes columns one at a time and spreads each column's rounding
  error over the not-yet-quantized columns using the inverse Hessian of the layer's inputs,
  collected from calibration text block by block (each block sees the already-quantized blocks'
  outputs).

A quantized model is a directory: ``config.json`` (Llama format, as trainer.hf writes it),
``quantization.json`` and ``model.safetensors`` (our parameter names; ``…qweight/scales/zeros``
for the quantized layers). ``perplexity`` evaluates fp32 and int4 models on the same tokens.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from heurimentor_trainer.hf import CONFIG_NAME, hf_config_dict, read_hf_config
from heurimentor_trainer.model import Transformer, build_model

logger = logging.getLogger(__name__)

BITS = 4
LEVELS = 2**BITS - 1
DEFAULT_GROUP_SIZE = 128
QUANT_CONFIG = "quantization.json"
WEIGHTS_FILE = "model.safetensors"
METHODS = ("rtn", "gptq")


class QuantizationError(ValueError):
    """Inputs that cannot be quantized or loaded; the message names the file, layer or option."""


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """uint8 codes in [0, 15], last dim even -> uint8, two codes per byte (low nibble first)."""
    codes = codes.to(torch.uint8)
    return codes[..., 0::2] | (codes[..., 1::2] << 4)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    return torch.stack([packed & 0x0F, packed >> 4], dim=-1).flatten(-2)


def group_params(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Asymmetric grid for each row of ``weight`` (rows x group): fp16-representable scale, integer zero.

    The range always includes 0 (as in GPTQ), so a zero weight stays exactly zero.
    """
    low = weight.min(dim=-1).values.clamp(max=0)
    high = weight.max(dim=-1).values.clamp(min=0)
    scale = ((high - low) / LEVELS).clamp(min=1e-8).half().float()
    zero = torch.round(-low / scale).clamp(0, LEVELS)
    return scale, zero


def quantize_codes(weight: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    return torch.clamp(torch.round(weight / scale.unsqueeze(-1)) + zero.unsqueeze(-1), 0, LEVELS)


def _grouped(weight: torch.Tensor, group_size: int) -> torch.Tensor:
    """(out, in) -> (out, groups, group_size), zero-padding the last group."""
    out_features, in_features = weight.shape
    pad = -in_features % group_size
    return F.pad(weight, (0, pad)).view(out_features, -1, group_size)


@dataclass
class PackedInt4:
    qweight: torch.Tensor  # uint8 (out, padded_in / 2)
    scales: torch.Tensor  # fp16 (out, groups)
    zeros: torch.Tensor  # uint8 (out, groups)


def quantize_rtn(weight: torch.Tensor, group_size: int = DEFAULT_GROUP_SIZE) -> PackedInt4:
    grouped = _grouped(weight.float(), group_size)
    scale, zero = group_params(grouped)
    codes = quantize_codes(grouped, scale, zero).flatten(1)
    return PackedInt4(pack_int4(codes), scale.half(), zero.to(torch.uint8))


def quantize_gptq(weight: torch.Tensor, hessian: torch.Tensor, group_size: int = DEFAULT_GROUP_SIZE, damp: float = 0.01) -> PackedInt4:
    """GPTQ with blocks of ``group_size`` columns (so each group's grid is set from its error-updated weights)."""
    W = weight.detach().float().clone()
    rows, cols = W.shape
    device = W.device
    H = hessian.to(device=device, dtype=torch.float64)  # the Cholesky of a nearly singular Hessian needs float64
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += damp * torch.diag(H).mean() * torch.eye(cols, dtype=H.dtype, device=device)
    H_inv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True).float()

    n_groups = math.ceil(cols / group_size)
    codes = torch.zeros(rows, n_groups * group_size, device=device)
    scales, zeros = torch.zeros(rows, n_groups, device=device), torch.zeros(rows, n_groups, device=device)
    for g, start in enumerate(range(0, cols, group_size)):
        end = min(start + group_size, cols)
        block, H_block = W[:, start:end].clone(), H_inv[start:end, start:end]
        errors = torch.zeros_like(block)
        scale, zero = group_params(block)
        scales[:, g], zeros[:, g] = scale, zero
        for i in range(end - start):
            column = block[:, i]
            q = quantize_codes(column.unsqueeze(-1), scale, zero).squeeze(-1)
            codes[:, start + i] = q
            error = (column - (q - zero) * scale) / H_block[i, i]
            block[:, i:] -= error.unsqueeze(1) * H_block[i, i:].unsqueeze(0)
            errors[:, i] = error
        W[:, end:] -= errors @ H_inv[start:end, end:]
    return PackedInt4(pack_int4(codes), scales.half(), zeros.to(torch.uint8))


class Int4Linear(nn.Module):
    """A bias-free linear layer whose weight is packed int4; dequantized on the fly for the matmul."""

    def __init__(self, in_features: int, out_features: int, group_size: int = DEFAULT_GROUP_SIZE):
        super().__init__()
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        n_groups = math.ceil(in_features / group_size)
        self.register_buffer("qweight", torch.zeros(out_features, n_groups * group_size // 2, dtype=torch.uint8))
        self.register_buffer("scales", torch.zeros(out_features, n_groups, dtype=torch.float16))
        self.register_buffer("zeros", torch.zeros(out_features, n_groups, dtype=torch.uint8))

    @classmethod
    def from_packed(cls, packed: PackedInt4, in_features: int, group_size: int) -> Int4Linear:
        layer = cls(in_features, packed.qweight.shape[0], group_size)
        layer.qweight.copy_(packed.qweight)
        layer.scales.copy_(packed.scales)
        layer.zeros.copy_(packed.zeros)
        return layer

    def weight(self) -> torch.Tensor:
        codes = unpack_int4(self.qweight).view(self.out_features, -1, self.group_size).float()
        dequantized = (codes - self.zeros.float().unsqueeze(-1)) * self.scales.float().unsqueeze(-1)
        return dequantized.flatten(1)[:, : self.in_features]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight().to(x.dtype))

    def storage_bytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in (self.qweight, self.scales, self.zeros))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bits=4, group_size={self.group_size}"


def quantizable_linears(model: Transformer) -> dict[str, nn.Linear]:
    """The linear layers inside the transformer blocks, by qualified name."""
    return {
        f"layers.{key}.{name}": module
        for key, block in model.layers.items()
        for name, module in block.named_modules()
        if isinstance(module, nn.Linear)
    }


def _replace(model: nn.Module, qualified_name: str, new: nn.Module) -> None:
    parent_name, _, child = qualified_name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, new)


@dataclass(frozen=True)
class QuantizationSummary:
    method: str
    group_size: int
    layers: int
    weights: int  # quantized weights
    storage_bytes: int  # their packed storage, scales and zeros included
    bits_per_weight: float
    mean_relative_error: float  # ||W - deq(W)|| / ||W||, averaged over layers


def quantize_model(
    model: Transformer,
    *,
    method: str = "gptq",
    calibration: torch.Tensor | None = None,
    group_size: int = DEFAULT_GROUP_SIZE,
    batch_size: int = 8,
) -> QuantizationSummary:
    """Replace every block linear with an ``Int4Linear`` in place. GPTQ needs ``calibration`` (n, seq) token ids."""
    if method not in METHODS:
        raise QuantizationError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if group_size <= 0 or group_size % 2:
        raise QuantizationError(f"group_size={group_size} must be a positive even number")
    if method == "gptq" and (calibration is None or calibration.numel() == 0):
        raise QuantizationError("GPTQ needs calibration tokens (pass calibration text)")
    model.eval()
    errors: list[float] = []

    def replace(name: str, linear: nn.Linear, packed: PackedInt4) -> int:
        quantized = Int4Linear.from_packed(packed, linear.in_features, group_size).to(linear.weight.device)
        errors.append(((linear.weight.float() - quantized.weight()).norm() / linear.weight.float().norm()).item())
        _replace(model, name, quantized)
        return quantized.storage_bytes()

    linears = quantizable_linears(model)
    weights = sum(linear.weight.numel() for linear in linears.values())
    storage = 0
    with torch.no_grad():
        if method == "rtn":
            for name, linear in linears.items():
                storage += replace(name, linear, quantize_rtn(linear.weight, group_size))
        else:
            storage = _gptq_blocks(model, calibration, group_size, batch_size, replace)
    summary = QuantizationSummary(
        method=method,
        group_size=group_size,
        layers=len(linears),
        weights=weights,
        storage_bytes=storage,
        bits_per_weight=8 * storage / weights,
        mean_relative_error=sum(errors) / len(errors),
    )
    logger.info("quantized model", extra=asdict(summary))
    return summary


def _gptq_blocks(
    model: Transformer, calibration: torch.Tensor, group_size: int, batch_size: int, replace: Callable[[str, nn.Linear, PackedInt4], int]
) -> int:
    """Quantize block by block; each block's Hessians come from the quantized blocks before it."""
    seq = calibration.shape[1]
    rope = model.rope[:, :seq]
    device = model.tok_embeddings.weight.device
    batches = [model.tok_embeddings(chunk.to(device)) for chunk in calibration.split(batch_size)]
    storage = 0
    for key, block in model.layers.items():
        linears = {name: m for name, m in block.named_modules() if isinstance(m, nn.Linear)}
        hessians = {name: torch.zeros(m.in_features, m.in_features, device=m.weight.device) for name, m in linears.items()}
        counts = dict.fromkeys(linears, 0)

        def accumulate(name: str, hessians: dict = hessians, counts: dict = counts):
            def hook(_module, inputs, _output):
                x = inputs[0].detach().flatten(0, -2).float()
                hessians[name] += x.T @ x
                counts[name] += x.shape[0]

            return hook

        handles = [m.register_forward_hook(accumulate(name)) for name, m in linears.items()]
        for h in batches:
            block(h, rope)
        for handle in handles:
            handle.remove()
        for name, linear in linears.items():
            hessian = 2 * hessians[name] / counts[name]
            storage += replace(f"layers.{key}.{name}", linear, quantize_gptq(linear.weight, hessian, group_size))
        batches = [block(h, rope) for h in batches]
    return storage


def save_quantized(model: Transformer, path: str | Path, summary: QuantizationSummary) -> None:
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    save_file(state, str(path / WEIGHTS_FILE), metadata={"format": "pt", "quantization": "int4-groupwise"})
    quantized = sorted(name for name, m in model.named_modules() if isinstance(m, Int4Linear))
    (path / QUANT_CONFIG).write_text(json.dumps({**asdict(summary), "bits": BITS, "modules": quantized}, indent=2) + "\n")
    (path / CONFIG_NAME).write_text(json.dumps(hf_config_dict(model.args), indent=2) + "\n")


def load_quantized(path: str | Path, device: str | torch.device = "cpu") -> Transformer:
    from safetensors.torch import load_file

    path = Path(path)
    try:
        config = json.loads((path / QUANT_CONFIG).read_text())
    except FileNotFoundError as e:
        raise QuantizationError(f"{path}: no {QUANT_CONFIG}; not a quantized model directory") from e
    args = read_hf_config(path)
    model = build_model(args, device="meta")
    with torch.device("meta"):
        for name in config["modules"]:
            linear = model.get_submodule(name)
            _replace(model, name, Int4Linear(linear.in_features, linear.out_features, config["group_size"]))
    model.to_empty(device=device)
    state = load_file(str(path / WEIGHTS_FILE))
    for name, tensor in model.state_dict().items():
        if name in state and state[name].shape != tensor.shape:
            raise QuantizationError(f"{path}: tensor {name!r} has shape {list(state[name].shape)}, expected {list(tensor.shape)}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise QuantizationError(f"{path}: weights do not match {CONFIG_NAME}/{QUANT_CONFIG}: {e}") from e
    model.init_rope(device)
    return model.eval()


def token_windows(token_ids: Sequence[int], seq_len: int, max_windows: int | None = None) -> torch.Tensor:
    """Non-overlapping (n, seq_len + 1) windows of a token stream (the last partial one dropped)."""
    n = (len(token_ids) - 1) // seq_len
    if max_windows is not None:
        n = min(n, max_windows)
    if n == 0:
        raise QuantizationError(f"{len(token_ids)} tokens are too few for one window of seq_len={seq_len}")
    ids = torch.tensor(list(token_ids[: n * seq_len + 1]), dtype=torch.long)
    return torch.stack([ids[i * seq_len : (i + 1) * seq_len + 1] for i in range(n)])


@torch.no_grad()
def perplexity(model: Transformer, windows: torch.Tensor, batch_size: int = 8) -> float:
    """exp(mean next-token cross-entropy) over every position of every window."""
    model.eval()
    total, count = 0.0, 0
    device = model.tok_embeddings.weight.device
    for batch in windows.to(device).split(batch_size):
        logits = model(batch[:, :-1])
        total += F.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten(), reduction="sum").item()
        count += batch[:, 1:].numel()
    return math.exp(total / count)
