"""One rank's peak memory for a model built on ``meta`` → parallelized → materialised → one AdamW step.

Run alone it holds the whole model; under torchrun (gloo on CPU) it is sharded with FSDP2
``fully_shard``, the GPU path of ``heurimentor_trainer.parallelize``. Prints one JSON line with
the peak memory this rank grew by (MiB) over materialising the model and one training step.
"""

from __future__ import annotations

import json
import resource

import torch
import torch.distributed as dist
import torch.nn.functional as F

from heurimentor_trainer import parallelize as par
from heurimentor_trainer.config import DistEnv
from heurimentor_trainer.model import ModelArgs, build_model

# ~60 M parameters in 8 blocks: the blocks hold 95% of them, as in the large presets.
ARGS = ModelArgs(dim=768, n_layers=8, n_heads=12, n_kv_heads=4, ffn_hidden_dim=2560, vocab_size=2048, max_seq_len=64)


def resident_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_and_step(args: ModelArgs, *, shard: bool) -> torch.nn.Module:
    model = par.parallelize(
        build_model(args, device="meta"), torch.device("cpu"), activation_checkpointing=False, compile=False, seed=0, shard=shard
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    tokens = torch.randint(0, args.vocab_size, (1, 33))
    logits = model(tokens[:, :-1])
    F.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten()).backward()
    optimizer.step()
    return model


def main() -> None:
    torch.set_num_threads(1)
    env = DistEnv.from_env()
    par.init_distributed(env, torch.device("cpu"))
    # The same path once on a tiny model first: FSDP2, DTensor and autograd load modules lazily,
    # a fixed cost that is not the model's.
    build_and_step(ModelArgs(dim=64, n_layers=1, n_heads=4, ffn_hidden_dim=128, vocab_size=128, max_seq_len=64), shard=env.distributed)
    before = resident_mib()
    model = build_and_step(ARGS, shard=env.distributed)
    stepped = peak_mib()
    local = sum((p.to_local() if hasattr(p, "to_local") else p).numel() for p in model.parameters())
    print(
        json.dumps(
            {
                "rank": env.rank,
                "world_size": env.world_size,
                "local_params": local,
                "total_params": ARGS.num_params(),
                "grown_mib": stepped - before,
            }
        ),
        flush=True,
    )
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
