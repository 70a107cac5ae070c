"""Model FLOPs utilisation of a few aquila2-7b-shaped transformer layers, bf16, one GPU.

Runs our ``TransformerBlock`` (the same module the trainer trains) with the aquila2-7b shape, bf16
parameters and activations, and times forward+backward and then the fused AdamW step with CUDA
events. FLOPs follow the trainer's own accounting (``ModelArgs.flops_per_token``, PaLM appendix B:
6 x parameters + 12 x layers x dim x seq per token, attention counted without the causal saving),
restricted to the layers (no embedding or output head). MFU = achieved / the device's dense bf16
peak; the peak used is printed (``--peak-tflops`` overrides it). Target: MFU >= 55 %.

    python bench/trainer_gpu_mfu.py [--layers 4] [--seq-len 2048] [--batch 4] [--compile]

Needs only torch (no network, no other packages). ``--device cpu --peak-tflops 1 --preset debug``
is a tiny smoke path for machines without a GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from heurimentor_trainer.model import TransformerBlock, rope_cache  # noqa: E402
from heurimentor_trainer.presets import get_preset  # noqa: E402

# Dense (no sparsity) bf16 tensor-core peak, TFLOP/s, from the vendors' data sheets (SXM parts).
PEAK_BF16_TFLOPS = {
    "H200": 989.4,
    "H100": 989.4,  # SXM; the PCIe card is 756
    "H800": 989.4,
    "H20": 148.0,
    "A100": 312.0,
    "A800": 312.0,
    "L40S": 362.1,
    "L4": 121.0,
    "A10G": 70.0,
    "B200": 2250.0,
}


def device_peak_tflops(device_name: str) -> float | None:
    name = device_name.upper()
    if "H100" in name and "PCIE" in name:
        return 756.0
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):  # "H200" before "H20"
        if key in name:
            return PEAK_BF16_TFLOPS[key]
    return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=4, help="transformer layers to stack (default 4)")
    parser.add_argument("--seq-len", type=int, default=2048, help="tokens per sequence (default 2048, the 7B's)")
    parser.add_argument("--batch", type=int, default=4, help="sequences per step (default 4)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--preset", default="aquila2-7b", help="layer shape to use (default aquila2-7b)")
    parser.add_argument("--compile", action="store_true", help="torch.compile each layer")
    parser.add_argument("--peak-tflops", type=float, help="device peak bf16 TFLOP/s (default: from the device name)")
    parser.add_argument("--device", default="cuda")
    opts = parser.parse_args(argv)
    for name in ("layers", "seq_len", "batch", "steps"):
        if getattr(opts, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {getattr(opts, name)}")
    return opts


class Layers(nn.Module):
    """``n`` transformer blocks of the preset's shape, as the full model runs them."""

    def __init__(self, args, n: int):
        super().__init__()
        self.layers = nn.ModuleList(TransformerBlock(args) for _ in range(n))

    def forward(self, h: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            h = layer(h, rope)
        return h


def main(argv: list[str] | None = None) -> dict:
    opts = parse_args(argv)
    device = torch.device(opts.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device: this benchmark needs a GPU (use --device cpu --peak-tflops N for a smoke run)")
    preset_args = get_preset(opts.preset).model
    args = dataclasses.replace(preset_args, n_layers=opts.layers, max_seq_len=max(opts.seq_len, preset_args.max_seq_len))
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = opts.peak_tflops or device_peak_tflops(device_name)
    if peak is None:
        sys.exit(f"unknown peak bf16 TFLOP/s for device {device_name!r}: pass --peak-tflops")

    torch.manual_seed(0)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    model = Layers(args, opts.layers).to(device=device, dtype=torch.bfloat16)
    std = args.init_std
    for layer in model.layers:
        layer.init_weights(std, std / (2 * args.n_layers) ** 0.5)
    if opts.compile:
        for layer in model.layers:
            layer.compile()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=device.type == "cuda")
    rope = rope_cache(args.head_dim, opts.seq_len, args.rope_theta, device=device)
    x = torch.randn(opts.batch, opts.seq_len, args.dim, device=device, dtype=torch.bfloat16)
    grad_out = torch.randn_like(x) * 1e-3

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def timer():
        if device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        import time

        return time.perf_counter()

    def elapsed_s(start, end) -> float:
        return start.elapsed_time(end) / 1e3 if device.type == "cuda" else end - start

    fwd_bwd, opt_step = [], []
    for i in range(opts.warmup + opts.steps):
        t0 = timer()
        model(x, rope).backward(grad_out)
        t1 = timer()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t2 = timer()
        sync()
        if i >= opts.warmup:
            fwd_bwd.append(elapsed_s(t0, t1))
            opt_step.append(elapsed_s(t1, t2))

    layer_params = sum(p.numel() for p in model.parameters())
    # The trainer's accounting (ModelArgs.flops_per_token) restricted to these layers.
    flops_per_token = 6 * layer_params + 12 * opts.layers * args.dim * opts.seq_len
    tokens = opts.batch * opts.seq_len
    t_fb, t_opt = statistics.median(fwd_bwd), statistics.median(opt_step)
    tflops_fb = flops_per_token * tokens / t_fb / 1e12
    tflops_step = flops_per_token * tokens / (t_fb + t_opt) / 1e12
    memory_gib = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    print(
        f"device={device_name} torch={torch.__version__} preset={opts.preset} layers={opts.layers} "
        f"seq_len={opts.seq_len} batch={opts.batch} compile={opts.compile} dtype=bf16"
    )
    print(f"layer params={layer_params:,} flops/token={flops_per_token:.4e} tokens/step={tokens} peak GPU memory={memory_gib:.1f} GiB")
    print(f"peak used: {peak:.1f} TFLOP/s (dense bf16{', from --peak-tflops' if opts.peak_tflops else ''})")
    print(f"forward+backward   : {t_fb * 1e3:8.2f} ms  {tflops_fb:7.1f} TFLOP/s  MFU {100 * tflops_fb / peak:5.1f} %")
    print(
        f"+ fused AdamW step : {(t_fb + t_opt) * 1e3:8.2f} ms  {tflops_step:7.1f} TFLOP/s  MFU {100 * tflops_step / peak:5.1f} % (target >= 55 %)"
    )
    return {"tflops_fwd_bwd": tflops_fb, "tflops_step": tflops_step, "mfu_step": tflops_step / peak, "peak_tflops": peak}


if __name__ == "__main__":
    main()
