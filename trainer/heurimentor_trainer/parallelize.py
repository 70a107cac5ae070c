"""Parallelism, applied from outside the model in a fixed order: apply_ac -> apply_compile -> FSDP2/DDP.

The model arrives built on ``meta`` (shapes only) and is materialised here, after sharding: each
rank allocates only its own shards, so a 70B model never exists in full on any rank.

CPU: DDP over gloo (fp32). GPU: FSDP2 ``fully_shard`` per transformer block and the root, with
bf16 parameters for compute and fp32 gradient reduction, plus bf16 autocast around the forward.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.nn.parallel import DistributedDataParallel

from heurimentor_trainer.config import DistEnv
from heurimentor_trainer.model import Transformer

log = logging.getLogger(__name__)


def pick_device(name: str, env: DistEnv) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        torch.cuda.set_device(env.local_rank)
        return torch.device("cuda", env.local_rank)
    return torch.device(name)


def init_distributed(env: DistEnv, device: torch.device) -> None:
    """Join the process group torchrun set up (c10d store from the rendezvous); no-op when run alone."""
    if not env.distributed or dist.is_initialized():
        return
    backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, timeout=timedelta(minutes=10))
    log.info("process group ready", extra={"rank": env.rank, "world_size": env.world_size, "backend": backend})


def apply_ac(model: Transformer) -> None:
    """Recompute each block's activations in the backward pass instead of storing them."""
    for key, block in model.layers.items():
        model.layers[key] = checkpoint_wrapper(block, preserve_rng_state=False)


def apply_compile(model: Transformer) -> None:
    """Compile each block on its own: repeated blocks share one graph and compile fast."""
    for block in model.layers.values():
        block.compile(fullgraph=True)


def apply_fsdp(model: Transformer, *, mixed_precision: bool = True) -> nn.Module:
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if mixed_precision else MixedPrecisionPolicy()
    for block in model.layers.values():
        fully_shard(block, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    return model


def materialize(model: Transformer, device: torch.device, *, seed: int) -> None:
    """Allocate a ``meta`` model's (local shards of) parameters on ``device`` and initialise them."""
    model.to_empty(device=device)
    sharded = any(hasattr(p, "to_local") for p in model.parameters())
    # Unsharded: the same weights on every rank and for every world size. Sharded on GPU, DTensor
    # draws each shard from its own offset of one stream; on CPU it has no such tracker and every
    # rank would draw the same numbers for its shard (repeated rows), so ranks are seeded apart.
    torch.manual_seed(seed + (dist.get_rank() if sharded and device.type == "cpu" else 0))
    model.init_weights(buffer_device=device)


def parallelize(
    model: Transformer, device: torch.device, *, activation_checkpointing: bool, compile: bool, seed: int, shard: bool | None = None
) -> nn.Module:
    """A ``meta`` model in; a materialised, initialised, parallelised one out.

    ``shard`` (default: on GPU when distributed) shards with FSDP2 before materialising; otherwise
    the model is materialised whole and, when distributed, wrapped in DDP (which needs real
    tensors: it broadcasts rank 0's weights).
    """
    if activation_checkpointing:
        apply_ac(model)
    if compile:
        apply_compile(model)
    distributed = dist.is_initialized()
    shard = distributed and (device.type == "cuda" if shard is None else shard)
    if shard:
        apply_fsdp(model, mixed_precision=device.type == "cuda")
    materialize(model, device, seed=seed)
    if distributed and not shard:
        return DistributedDataParallel(model)
    return model


def unwrap(model: nn.Module) -> Transformer:
    return model.module if isinstance(model, DistributedDataParallel) else model


def autocast(device: torch.device):
    """bf16 autocast on GPU; full fp32 on CPU (bf16 matmuls on CPU are slow and lossy)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def gradient_sync(model: nn.Module, enabled: bool):
    """Skip the gradient all-reduce on all but the last micro batch of a step."""
    if isinstance(model, DistributedDataParallel):
        return contextlib.nullcontext() if enabled else model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(enabled)
    return contextlib.nullcontext()


def clip_grad_norm(model: nn.Module, max_norm: float) -> torch.Tensor:
    """Clip to ``max_norm``; returns the total norm before clipping (a full tensor under FSDP2)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.get_total_norm(grads, foreach=True)
    if hasattr(norm, "full_tensor"):  # FSDP2: each rank holds the norm of its shards
        norm = norm.full_tensor()
    torch.nn.utils.clip_grads_with_norm_([p for p in model.parameters() if p.grad is not None], max_norm, norm, foreach=True)
    return norm
