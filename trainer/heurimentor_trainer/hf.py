"""Hugging Face (Llama-format) checkpoints in and out: ``config.json`` + safetensors.

BAAI publishes Aquila2 in the Llama layout (``model.layers.N.self_attn.q_proj.weight`` …, the
"rotate half" rotary layout, which our model uses too), as one ``model.safetensors`` or as shards
listed by ``model.safetensors.index.json``. Import checks the config and the shape of every tensor
*before* reading any weight data, so a checkpoint of another shape fails at once with the tensor
or field named; export writes the same layout, sharded when large.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import torch

from heurimentor_trainer.model import ModelArgs, ModelConfigError, Transformer, build_model

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
DEFAULT_MAX_SHARD_BYTES = 5 * 1024**3  # 5 GB per file, as transformers' save_pretrained


class HFCheckpointError(ValueError):
    """A checkpoint directory that does not hold a model we can load; the message names the field or tensor."""


def hf_config_dict(args: ModelArgs, *, dtype: torch.dtype = torch.float32) -> dict:
    """``config.json`` for a ``LlamaForCausalLM`` of exactly this shape."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": args.dim,
        "intermediate_size": args.ffn_hidden_dim,
        "num_hidden_layers": args.n_layers,
        "num_attention_heads": args.n_heads,
        "num_key_value_heads": args.n_kv_heads,
        "head_dim": args.head_dim,
        "vocab_size": args.vocab_size,
        "max_position_embeddings": args.max_seq_len,
        "rms_norm_eps": args.norm_eps,
        "rope_parameters": {"rope_type": "default", "rope_theta": args.rope_theta},
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "initializer_range": args.init_std,
        "torch_dtype": str(dtype).removeprefix("torch."),
    }


def model_args_from_hf_config(config: dict, *, source: str = CONFIG_NAME) -> ModelArgs:
    """ModelArgs for a Llama-format config; anything our architecture cannot express is an error."""
    model_type = config.get("model_type", "llama")
    if model_type not in ("llama", "aquila"):
        raise HFCheckpointError(f"{source}: model_type={model_type!r} is not a Llama-format model (llama, aquila)")
    for field, expected in (("hidden_act", "silu"), ("attention_bias", False), ("mlp_bias", False), ("tie_word_embeddings", False)):
        if config.get(field, expected) != expected:
            raise HFCheckpointError(f"{source}: {field}={config[field]!r} is not supported (Aquila2 uses {expected!r})")
    rope = config.get("rope_parameters") or {}
    if (config.get("rope_scaling") or {}).get("rope_type", "default") != "default" or rope.get("rope_type", "default") != "default":
        raise HFCheckpointError(f"{source}: rope scaling {config.get('rope_scaling') or rope!r} is not supported (plain RoPE only)")
    for field in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"):
        if field not in config:
            raise HFCheckpointError(f"{source}: required field {field!r} is missing")
    heads = config["num_attention_heads"]
    if config.get("head_dim") not in (None, config["hidden_size"] // heads if heads else None):
        raise HFCheckpointError(f"{source}: head_dim={config['head_dim']} differs from hidden_size/num_attention_heads")
    try:
        return ModelArgs(
            dim=config["hidden_size"],
            n_layers=config["num_hidden_layers"],
            n_heads=heads,
            n_kv_heads=config.get("num_key_value_heads") or heads,
            ffn_hidden_dim=config["intermediate_size"],
            vocab_size=config["vocab_size"],
            max_seq_len=config.get("max_position_embeddings", 2048),
            norm_eps=float(config.get("rms_norm_eps", 1e-6)),
            rope_theta=float(rope.get("rope_theta", config.get("rope_theta", 10_000.0))),
            init_std=float(config.get("initializer_range", 0.02)),
        )
    except ModelConfigError as e:
        raise HFCheckpointError(f"{source}: {e}") from e


# Our parameter name -> HF name. Layer-local names get "layers.N." / "model.layers.N." prefixes.
_TOP_LEVEL = {
    "tok_embeddings.weight": "model.embed_tokens.weight",
    "norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_PER_LAYER = {
    "attention_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attention.wo.weight": "self_attn.o_proj.weight",
    "feed_forward.w2.weight": "mlp.down_proj.weight",
}
# Fused projections: one of our weights is several HF weights stacked along dim 0, in this order.
_FUSED = {
    "attention.wqkv.weight": ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"),
    "feed_forward.w13.weight": ("mlp.gate_proj.weight", "mlp.up_proj.weight"),
}


def hf_shapes(args: ModelArgs) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor in a Llama-format checkpoint of this model shape."""
    kv_dim = args.n_kv_heads * args.head_dim
    shapes = {
        "model.embed_tokens.weight": (args.vocab_size, args.dim),
        "model.norm.weight": (args.dim,),
        "lm_head.weight": (args.vocab_size, args.dim),
    }
    per_layer = {
        "input_layernorm.weight": (args.dim,),
        "post_attention_layernorm.weight": (args.dim,),
        "self_attn.q_proj.weight": (args.dim, args.dim),
        "self_attn.k_proj.weight": (kv_dim, args.dim),
        "self_attn.v_proj.weight": (kv_dim, args.dim),
        "self_attn.o_proj.weight": (args.dim, args.dim),
        "mlp.gate_proj.weight": (args.ffn_hidden_dim, args.dim),
        "mlp.up_proj.weight": (args.ffn_hidden_dim, args.dim),
        "mlp.down_proj.weight": (args.dim, args.ffn_hidden_dim),
    }
    for i in range(args.n_layers):
        shapes.update({f"model.layers.{i}.{name}": shape for name, shape in per_layer.items()})
    return shapes


def to_hf_state_dict(model: Transformer) -> dict[str, torch.Tensor]:
    """Our weights under HF names, fused projections split back into HF's separate ones."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        if name in _TOP_LEVEL:
            out[_TOP_LEVEL[name]] = tensor
            continue
        _, index, local = name.split(".", 2)  # "layers.<i>.<local>"
        prefix = f"model.layers.{index}."
        if local in _PER_LAYER:
            out[prefix + _PER_LAYER[local]] = tensor
        elif local in _FUSED:
            sizes = [shape[0] for shape in _fused_part_shapes(model.args, local)]
            for part, piece in zip(_FUSED[local], tensor.split(sizes, dim=0), strict=True):
                out[prefix + part] = piece.contiguous()
        else:
            raise KeyError(f"no Hugging Face name for parameter {name!r}")
    return out


def _fused_part_shapes(args: ModelArgs, local: str) -> list[tuple[int, ...]]:
    shapes = hf_shapes(args)
    return [shapes[f"model.layers.0.{part}"] for part in _FUSED[local]]


def from_hf_state_dict(hf_state: dict[str, torch.Tensor], args: ModelArgs) -> dict[str, torch.Tensor]:
    """HF names -> our names, fusing q/k/v and gate/up. Shapes must already have been checked."""
    ours = {ours_name: hf_state[hf_name] for ours_name, hf_name in _TOP_LEVEL.items()}
    for i in range(args.n_layers):
        prefix = f"model.layers.{i}."
        for local, hf_name in _PER_LAYER.items():
            ours[f"layers.{i}.{local}"] = hf_state[prefix + hf_name]
        for local, parts in _FUSED.items():
            ours[f"layers.{i}.{local}"] = torch.cat([hf_state[prefix + part] for part in parts], dim=0)
    return ours


def check_shapes(found: dict[str, tuple[int, ...]], args: ModelArgs, *, source: str) -> None:
    """Every tensor the model needs is present with the right shape; nothing unexpected is left over."""
    expected = hf_shapes(args)
    for name, shape in expected.items():
        if name not in found:
            raise HFCheckpointError(f"{source}: tensor {name!r} is missing (expected shape {list(shape)})")
        if tuple(found[name]) != shape:
            raise HFCheckpointError(f"{source}: tensor {name!r} has shape {list(found[name])}, expected {list(shape)}")
    # Old checkpoints carry rotary inverse-frequency buffers; they are derived from the config.
    extra = sorted(n for n in found if n not in expected and not n.endswith("rotary_emb.inv_freq"))
    if extra:
        raise HFCheckpointError(f"{source}: unexpected tensor {extra[0]!r} ({len(extra)} unexpected in all)")


def _weight_files(path: Path) -> list[Path]:
    index = path / INDEX_FILE
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (ValueError, KeyError) as e:
            raise HFCheckpointError(f"{index}: not a safetensors index (no 'weight_map')") from e
        files = sorted({path / name for name in weight_map.values()})
    elif (path / SINGLE_FILE).exists():
        files = [path / SINGLE_FILE]
    else:
        raise HFCheckpointError(f"{path}: no {SINGLE_FILE} or {INDEX_FILE} (only safetensors checkpoints are supported)")
    for file in files:
        if not file.exists():
            raise HFCheckpointError(f"{path}: shard {file.name} listed in {INDEX_FILE} does not exist")
    return files


def read_hf_config(path: str | Path) -> ModelArgs:
    config_path = Path(path) / CONFIG_NAME
    try:
        config = json.loads(config_path.read_text())
    except FileNotFoundError as e:
        raise HFCheckpointError(f"{path}: no {CONFIG_NAME}; not a Hugging Face checkpoint directory") from e
    except ValueError as e:
        raise HFCheckpointError(f"{config_path}: not valid JSON") from e
    return model_args_from_hf_config(config, source=str(config_path))


def inspect_hf_checkpoint(path: str | Path, expected: ModelArgs | None = None) -> ModelArgs:
    """Validate config and every tensor's shape from the file headers alone (no weight data is read).

    With ``expected``, the checkpoint must have exactly that model shape (e.g. the job's preset).
    """
    from safetensors import safe_open

    path = Path(path)
    args = read_hf_config(path)
    if expected is not None:
        for field in ("dim", "n_layers", "n_heads", "n_kv_heads", "ffn_hidden_dim", "vocab_size", "rope_theta", "norm_eps"):
            if getattr(args, field) != getattr(expected, field):
                raise HFCheckpointError(
                    f"{path}: checkpoint has {field}={getattr(args, field)} but the model expects {field}={getattr(expected, field)}"
                )
    shapes: dict[str, tuple[int, ...]] = {}
    for file in _weight_files(path):
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():
                shapes[name] = tuple(f.get_slice(name).get_shape())
    check_shapes(shapes, args, source=str(path))
    return args


def _iter_tensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    from safetensors import safe_open

    for file in _weight_files(path):
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():
                if not name.endswith("rotary_emb.inv_freq"):
                    yield name, f.get_tensor(name)


def load_hf_checkpoint(
    path: str | Path, *, expected: ModelArgs | None = None, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> Transformer:
    """Build our model from a Llama-format checkpoint directory (validated before any weight is read)."""
    path = Path(path)
    args = inspect_hf_checkpoint(path, expected)
    if expected is not None:  # the caller's training-only settings (context length, init) win
        args = replace(args, max_seq_len=expected.max_seq_len, init_std=expected.init_std)
    hf_state = {name: tensor.to(dtype) for name, tensor in _iter_tensors(path)}
    model = build_model(args, device="meta")
    model.to_empty(device=device)
    model.load_state_dict(from_hf_state_dict(hf_state, args), strict=True)
    model.init_rope(device)
    logger.info("loaded Hugging Face checkpoint", extra={"path": str(path), "params": args.num_params()})
    return model.to(dtype)


def save_hf_checkpoint(
    model: Transformer, path: str | Path, *, dtype: torch.dtype | None = None, max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES
) -> list[Path]:
    """Write ``config.json`` and safetensors (sharded with an index above ``max_shard_bytes``)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {name: (t.to(dtype) if dtype else t).detach().cpu().contiguous() for name, t in to_hf_state_dict(model).items()}
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    metadata = {"format": "pt"}
    written: list[Path] = []
    if len(shards) == 1:
        save_file(shards[0], str(path / SINGLE_FILE), metadata=metadata)
        written.append(path / SINGLE_FILE)
    else:
        width = max(5, int(math.log10(len(shards))) + 1)
        weight_map = {}
        for i, shard in enumerate(shards, start=1):
            name = f"model-{i:0{width}d}-of-{len(shards):0{width}d}.safetensors"
            save_file(shard, str(path / name), metadata=metadata)
            weight_map.update(dict.fromkeys(shard, name))
            written.append(path / name)
        total = sum(t.numel() * t.element_size() for t in state.values())
        (path / INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    dtype_used = next(iter(state.values())).dtype
    (path / CONFIG_NAME).write_text(json.dumps(hf_config_dict(model.args, dtype=dtype_used), indent=2) + "\n")
    written.append(path / CONFIG_NAME)
    return written


def export_training_checkpoint(folder: str | Path, output: str | Path, *, dtype: torch.dtype | None = None) -> ModelArgs:
    """A training checkpoint (``trainer.checkpoint`` layout: the run's folder, whose ``latest`` is
    used, or one ``step-N`` folder) -> a Llama-format directory for ``transformers`` or ``quantize``."""
    import torch.distributed.checkpoint as dcp

    from heurimentor_trainer.checkpoint import LATEST, STATE_FILE

    folder = Path(folder)
    if (folder / LATEST).exists():
        folder = folder / (folder / LATEST).read_text().strip()
    try:
        saved = json.loads((folder / STATE_FILE).read_text())["model_args"]
    except FileNotFoundError as e:
        raise HFCheckpointError(f"{folder}: no {STATE_FILE}; not a training checkpoint (or its run folder)") from e
    except (ValueError, KeyError, TypeError) as e:
        raise HFCheckpointError(f"{folder / STATE_FILE}: no 'model_args' object") from e
    try:
        args = ModelArgs(**saved)
    except (TypeError, ModelConfigError) as e:
        raise HFCheckpointError(f"{folder / STATE_FILE}: model_args do not describe a model: {e}") from e
    model = build_model(args, device="meta")
    model.to_empty(device="cpu")
    state = {"model": model.state_dict()}
    with warnings.catch_warnings():  # one process on purpose: DCP reshards every rank's shards into it
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(state, checkpoint_id=str(folder), no_dist=True)  # only the model's tensors are read
    model.load_state_dict(state["model"])
    model.init_rope("cpu")
    save_hf_checkpoint(model, output, dtype=dtype)
    logger.info("exported training checkpoint", extra={"checkpoint": str(folder), "output": str(output)})
    return args
