"""Training-step throughput of our Aquila2 model vs ``transformers.LlamaForCausalLM``, on CPU.

Both models have the same shape (a tiny preset), the same weights (ours is exported into HF's
layout), the same batch, the same loss code and the same AdamW; steps alternate between the two in
one process so machine noise hits both alike. Prints tokens/s of each, the ratio (target >= 1.3x),
and the peak memory of one training step of each, measured in a forked child (peak RSS growth).

    python bench/trainer_step_vs_hf.py [--preset tiny] [--batch 8] [--seq-len 256] [--steps 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from heurimentor_trainer.hf import hf_config_dict, to_hf_state_dict  # noqa: E402
from heurimentor_trainer.model import build_model  # noqa: E402
from heurimentor_trainer.presets import get_preset  # noqa: E402


def build_pair(preset: str, seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    args = get_preset(preset).model
    ours = build_model(args, seed=seed)
    config = LlamaConfig(**hf_config_dict(args))
    config._attn_implementation = "sdpa"
    theirs = LlamaForCausalLM(config)
    theirs.load_state_dict(to_hf_state_dict(ours), strict=True)
    return ours, theirs


def logits_of(model, tokens: torch.Tensor) -> torch.Tensor:
    out = model(tokens)
    return out if isinstance(out, torch.Tensor) else out.logits


def make_step(model):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, foreach=True)

    def step(inputs: torch.Tensor, targets: torch.Tensor) -> float:
        logits = logits_of(model, inputs)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    return step


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_step_memory_mib(which: str, opts: argparse.Namespace) -> float:
    """Peak RSS growth over two training steps (optimizer state included) of one model, measured in
    a fresh child process (forking a process whose OpenMP pool is running can deadlock)."""
    cmd = [
        sys.executable,
        __file__,
        "--measure-memory",
        which,
        "--preset",
        opts.preset,
        "--batch",
        str(opts.batch),
        "--seq-len",
        str(opts.seq_len),
        "--threads",
        str(opts.threads),
    ]
    return float(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip())


def measure_memory_here(model, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    try:  # reset this process's high-water mark so only the steps count
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    base = _status_kib("VmRSS")
    step = make_step(model)
    for _ in range(2):
        step(inputs, targets)
    return (_status_kib("VmHWM") - base) / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per model (after 2 warm-up steps)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    parser.add_argument("--measure-memory", choices=["ours", "hf"], help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    torch.set_num_threads(opts.threads)

    ours, theirs = build_pair(opts.preset, seed=0)
    args = ours.args
    generator = torch.Generator().manual_seed(0)
    batch = torch.randint(0, args.vocab_size, (opts.batch, opts.seq_len + 1), generator=generator)
    inputs, targets = batch[:, :-1], batch[:, 1:]
    if opts.measure_memory:
        print(measure_memory_here(ours if opts.measure_memory == "ours" else theirs, inputs, targets))
        return
    mem_ours = peak_step_memory_mib("ours", opts)
    mem_hf = peak_step_memory_mib("hf", opts)
    with torch.no_grad():
        drift = (logits_of(ours, inputs) - logits_of(theirs, inputs)).abs().max().item()

    steps = {"ours": make_step(ours), "hf": make_step(theirs)}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(opts.steps + 2):
        for name, step in steps.items():  # alternate, so load changes on the machine hit both
            start = time.perf_counter()
            step(inputs, targets)
            if i >= 2:
                times[name].append(time.perf_counter() - start)

    tokens = opts.batch * opts.seq_len
    tps = {name: tokens / statistics.median(t) for name, t in times.items()}
    print(
        f"preset={opts.preset} params={args.num_params():,} batch={opts.batch} seq_len={opts.seq_len} "
        f"threads={opts.threads} torch={torch.__version__} max|logits diff|={drift:.2e}"
    )
    print(f"ours                  : {tps['ours']:10.0f} tokens/s   peak step memory {mem_ours:8.1f} MiB")
    print(f"transformers Llama    : {tps['hf']:10.0f} tokens/s   peak step memory {mem_hf:8.1f} MiB")
    print(f"speed-up ours / HF    : {tps['ours'] / tps['hf']:.2f}x (target >= 1.3x)")


if __name__ == "__main__":
    main()
