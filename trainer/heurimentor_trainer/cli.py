"""``heurimentor model|tokenizer|train|quantize …``.

Heavy imports (torch, tokenizers, safetensors) happen inside the commands. Every command checks its
inputs (preset, files, checkpoint shape) before it starts work, and reports bad input as one
``error: …`` line and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()
errors = Console(stderr=True)

model_app = typer.Typer(no_args_is_help=True)
tokenizer_app = typer.Typer(no_args_is_help=True)
quantize_app = typer.Typer(no_args_is_help=True)


def train(
    config: Annotated[Optional[str], typer.Option("--config", help="trainer YAML config (default /etc/heurimentor/train.yaml)")] = None,
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="override a field: section.field=value (repeatable)")] = None,
    nproc_per_node: Annotated[int, typer.Option(help="worker processes; >1 runs them under torchrun --standalone")] = 1,
) -> None:
    """Train on this machine (the operator and `torchx run` launch the same trainer elastically)."""
    import subprocess
    import sys

    args = (["--config", config] if config else []) + [a for item in overrides or [] for a in ("--set", item)]
    if nproc_per_node <= 1:
        from heurimentor_trainer.train import main

        main(args)
        return
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc_per_node}",
        "-m",
        "heurimentor_trainer.train",
        *args,
    ]
    raise typer.Exit(subprocess.call(command))


def register(root: typer.Typer) -> None:
    """Add the trainer's command groups to the root command."""
    root.command("train")(train)
    root.add_typer(model_app, name="model", help="Aquila2 model presets and Hugging Face checkpoints.")
    root.add_typer(tokenizer_app, name="tokenizer", help="Train the bilingual BPE tokenizer.")
    root.add_typer(quantize_app, name="quantize", help="Int4 weight-only quantization and its perplexity eval.")


@contextmanager
def user_errors():
    """Known bad-input errors become one clear line and exit code 2."""
    from heurimentor_trainer.hf import HFCheckpointError
    from heurimentor_trainer.model import ModelConfigError
    from heurimentor_trainer.quantize import QuantizationError
    from heurimentor_trainer.tokenizer import TokenizerTrainingError

    try:
        yield
    except (ModelConfigError, HFCheckpointError, TokenizerTrainingError, QuantizationError) as e:
        errors.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from e


def _human(n: float) -> str:
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(int(n))


# ----------------------------------------------------------------------------------------- model
@model_app.command("info")
def model_info(
    preset: Annotated[str, typer.Option(help="preset name, e.g. aquila2-34b (see `model list`)")],
    seq_len: Annotated[int | None, typer.Option(help="sequence length for FLOPs (default: the preset's max)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Parameter count and training FLOPs per token of a preset (built on the meta device: no memory)."""
    from heurimentor_trainer.model import build_model
    from heurimentor_trainer.presets import get_preset

    with user_errors():
        chosen = get_preset(preset)
        args = chosen.model
        if seq_len is not None and seq_len <= 0:
            raise typer.BadParameter(f"--seq-len must be positive, got {seq_len}")
        model = build_model(args, device="meta")
        params = sum(p.numel() for p in model.parameters())  # counted from the real module tree
    flops = args.flops_per_token(seq_len)
    info = {
        "preset": preset,
        "layers": args.n_layers,
        "dim": args.dim,
        "ffn_hidden_dim": args.ffn_hidden_dim,
        "heads": args.n_heads,
        "kv_heads": args.n_kv_heads,
        "head_dim": args.head_dim,
        "vocab_size": args.vocab_size,
        "max_seq_len": args.max_seq_len,
        "lr": chosen.lr,
        "global_batch_size": chosen.global_batch_size,
        "parameters": params,
        "non_embedding_parameters": args.num_params(exclude_embedding=True),
        "flops_per_token": flops,
        "flops_seq_len": seq_len or args.max_seq_len,
    }
    if as_json:
        console.print_json(json.dumps(info))
        return
    table = Table(title=f"{preset}", show_header=False)
    for key, value in info.items():
        shown = f"{value:,} ({_human(value)})" if key in ("parameters", "non_embedding_parameters", "flops_per_token") else str(value)
        table.add_row(key.replace("_", " "), shown)
    console.print(table)


@model_app.command("list")
def model_list() -> None:
    """The presets and their sizes."""
    from heurimentor_trainer.presets import PRESETS

    table = Table("preset", "layers", "dim", "ffn", "heads", "kv heads", "max len", "parameters")
    table.columns[0].no_wrap = True
    for name, preset in PRESETS.items():
        a = preset.model
        table.add_row(
            name, *(str(v) for v in (a.n_layers, a.dim, a.ffn_hidden_dim, a.n_heads, a.n_kv_heads, a.max_seq_len)), _human(a.num_params())
        )
    console.print(table)


@model_app.command("check-hf")
def model_check_hf(
    checkpoint: Annotated[Path, typer.Argument(help="Llama-format directory: config.json + safetensors")],
    preset: Annotated[str | None, typer.Option(help="require exactly this preset's shape")] = None,
) -> None:
    """Validate a Hugging Face checkpoint's config and every tensor shape (reads headers only)."""
    from heurimentor_trainer.hf import inspect_hf_checkpoint
    from heurimentor_trainer.presets import get_preset

    with user_errors():
        expected = get_preset(preset).model if preset else None
        args = inspect_hf_checkpoint(checkpoint, expected)
    console.print(
        f"{checkpoint}: ok — {args.n_layers} layers, dim {args.dim}, {args.n_heads} heads / "
        f"{args.n_kv_heads} kv heads, vocab {args.vocab_size}, {args.num_params():,} parameters"
    )


@model_app.command("export-hf")
def model_export_hf(
    checkpoint: Annotated[Path, typer.Argument(help="training checkpoint: the run's checkpoint folder (uses latest) or a step-N folder")],
    output: Annotated[Path, typer.Option(help="directory for config.json + safetensors")],
    dtype: Annotated[str, typer.Option(help="float32, bfloat16 or float16")] = "float32",
) -> None:
    """Export a training checkpoint as a Llama-format (Hugging Face) directory."""
    import torch

    from heurimentor_trainer.hf import HFCheckpointError, export_training_checkpoint

    with user_errors():
        if dtype not in ("float32", "bfloat16", "float16"):
            raise HFCheckpointError(f"--dtype {dtype!r} is not one of float32, bfloat16, float16")
        args = export_training_checkpoint(checkpoint, output, dtype=getattr(torch, dtype))
    console.print(f"exported {checkpoint} ({args.num_params():,} parameters, {dtype}) → {output}")


# ------------------------------------------------------------------------------------- tokenizer
@tokenizer_app.command("train")
def tokenizer_train(
    en: Annotated[
        list[Path], typer.Option("--en", help="English corpus file (.txt: a document per line, or .jsonl with 'text'); repeatable")
    ],
    zh: Annotated[list[Path], typer.Option("--zh", help="Chinese corpus file; repeatable")],
    output: Annotated[Path, typer.Option(help="directory for tokenizer.json and the report")],
    vocab_size: Annotated[int, typer.Option(help="BPE vocabulary (special tokens come on top)")] = 100_000,
    ratio: Annotated[str, typer.Option(help="EN:ZH sampling ratio, in UTF-8 bytes")] = "1:1",
    heldout_fraction: Annotated[float, typer.Option(help="fraction of each language held out for chars/token")] = 0.05,
    min_frequency: Annotated[int, typer.Option(help="minimum pair count for a merge")] = 2,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Train the byte-level BPE tokenizer on an EN/ZH corpus and report chars/token on held-out text."""
    from heurimentor_trainer.tokenizer import parse_ratio, read_documents, train_tokenizer

    with user_errors():
        parsed = parse_ratio(ratio)
        for file in [*en, *zh]:  # fail on a bad file before the (long) training starts
            read_documents(file)
        report = train_tokenizer(
            en, zh, output, vocab_size=vocab_size, ratio=parsed, heldout_fraction=heldout_fraction, min_frequency=min_frequency, seed=seed
        )
    table = Table(title=f"tokenizer → {output}", show_header=False)
    table.add_row("vocabulary", f"{report.vocab_size:,} (requested {report.requested_vocab_size:,} + 3 special)")
    table.add_row("train bytes EN / ZH", f"{report.train_bytes['en']:,} / {report.train_bytes['zh']:,} (ratio {ratio})")
    for lang, value in report.chars_per_token.items():
        table.add_row(f"chars/token held-out {lang.upper()}", f"{value:.3f}")
    console.print(table)


# -------------------------------------------------------------------------------------- quantize
def _text_windows(tokenizer_dir: Path, files: list[Path], seq_len: int, max_windows: int | None, vocab_size: int):
    from heurimentor_trainer.quantize import QuantizationError, token_windows
    from heurimentor_trainer.tokenizer import encode_files, load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir)
    if tokenizer.get_vocab_size() > vocab_size:
        raise QuantizationError(
            f"tokenizer {tokenizer_dir} has {tokenizer.get_vocab_size()} tokens but the model's "
            f"vocab_size is {vocab_size}: not the model's tokenizer"
        )
    return token_windows(encode_files(tokenizer, files), seq_len, max_windows)


def _check_seq_len(seq_len: int, max_seq_len: int) -> None:
    from heurimentor_trainer.quantize import QuantizationError

    if not 0 < seq_len <= max_seq_len:
        raise QuantizationError(f"--seq-len={seq_len} must be in 1..{max_seq_len} (the model's max_seq_len)")


def _check_device(device: str) -> None:
    import torch

    from heurimentor_trainer.quantize import QuantizationError

    try:
        kind = torch.device(device).type
    except RuntimeError as e:
        raise QuantizationError(f"--device {device!r} is not a torch device (cpu, cuda, cuda:1, …)") from e
    if kind == "cuda" and not torch.cuda.is_available():
        raise QuantizationError(f"--device {device}: no CUDA device is available here")
    if kind not in ("cpu", "cuda"):
        raise QuantizationError(f"--device {device!r}: only cpu and cuda are supported")


def _print_perplexity(reference: float, quantized: float, label: str) -> None:
    table = Table("model", "perplexity", title="perplexity on the eval text")
    table.add_row("fp32", f"{reference:.4f}")
    table.add_row(label, f"{quantized:.4f}")
    console.print(table)
    console.print(f"retained: {100 * reference / quantized:.2f} % (fp32 perplexity / int4 perplexity)", soft_wrap=True)


@quantize_app.command("run")
def quantize_run(
    checkpoint: Annotated[Path, typer.Argument(help="trained model, Llama-format directory (config.json + safetensors)")],
    output: Annotated[Path, typer.Option(help="directory for the int4 model")],
    tokenizer: Annotated[Path, typer.Option(help="the model's tokenizer directory (or tokenizer.json)")],
    calibration: Annotated[list[Path], typer.Option("--calibration", help="calibration text file (GPTQ); repeatable")] = [],  # noqa: B006
    eval_text: Annotated[list[Path], typer.Option("--eval", help="held-out text file for the perplexity eval; repeatable")] = [],  # noqa: B006
    method: Annotated[str, typer.Option(help="gptq or rtn (round to nearest)")] = "gptq",
    group_size: Annotated[int, typer.Option(help="weights per scale/zero group")] = 128,
    seq_len: Annotated[int, typer.Option(help="tokens per calibration/eval window")] = 256,
    calibration_windows: Annotated[int, typer.Option(help="calibration windows to use")] = 128,
    preset: Annotated[str | None, typer.Option(help="require the checkpoint to have this preset's shape")] = None,
    device: Annotated[str, typer.Option(help="where to run calibration and eval: cpu or cuda (the fp32 model must fit)")] = "cpu",
) -> None:
    """Quantize a trained checkpoint to packed int4 (group-wise); with --eval, print perplexity fp32 vs int4."""
    from heurimentor_trainer.hf import inspect_hf_checkpoint, load_hf_checkpoint
    from heurimentor_trainer.presets import get_preset
    from heurimentor_trainer.quantize import METHODS, QuantizationError, perplexity, quantize_model, save_quantized

    with user_errors():
        if method not in METHODS:
            raise QuantizationError(f"--method {method!r} is not one of {', '.join(METHODS)}")
        if method == "gptq" and not calibration:
            raise QuantizationError("--method gptq needs --calibration text (or use --method rtn)")
        _check_device(device)
        args = inspect_hf_checkpoint(checkpoint, get_preset(preset).model if preset else None)
        _check_seq_len(seq_len, args.max_seq_len)
        calib = _text_windows(tokenizer, calibration, seq_len, calibration_windows, args.vocab_size) if calibration else None
        held_out = _text_windows(tokenizer, eval_text, seq_len, None, args.vocab_size) if eval_text else None
        model = load_hf_checkpoint(checkpoint, device=device)
        reference = perplexity(model, held_out) if held_out is not None else None
        summary = quantize_model(model, method=method, calibration=None if calib is None else calib[:, :-1], group_size=group_size)
        save_quantized(model, output, summary)
    console.print(
        f"quantized {summary.layers} layers ({summary.weights:,} weights) with {method.upper()}, group {group_size}: "
        f"{summary.storage_bytes:,} bytes, {summary.bits_per_weight:.3f} bits/weight, "
        f"mean relative weight error {summary.mean_relative_error:.4f} → {output}",
        soft_wrap=True,
    )
    if held_out is not None:
        _print_perplexity(reference, perplexity(model, held_out), f"int4 {method}")


@quantize_app.command("eval")
def quantize_eval(
    checkpoint: Annotated[Path, typer.Argument(help="the fp32 model (Llama-format directory)")],
    quantized: Annotated[Path, typer.Argument(help="its int4 model (`quantize run` output)")],
    tokenizer: Annotated[Path, typer.Option(help="the model's tokenizer directory")],
    text: Annotated[list[Path], typer.Option("--text", help="held-out text file; repeatable")],
    seq_len: Annotated[int, typer.Option(help="tokens per window")] = 256,
    max_windows: Annotated[int | None, typer.Option(help="evaluate at most this many windows")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
) -> None:
    """Perplexity of the fp32 and int4 models on the same held-out tokens, and the retained ratio."""
    from heurimentor_trainer.hf import inspect_hf_checkpoint, load_hf_checkpoint, read_hf_config
    from heurimentor_trainer.quantize import QUANT_CONFIG, QuantizationError, load_quantized, perplexity

    with user_errors():
        _check_device(device)
        args = inspect_hf_checkpoint(checkpoint)
        if not (quantized / QUANT_CONFIG).is_file():
            raise QuantizationError(f"{quantized}: no {QUANT_CONFIG}; not a `heurimentor quantize run` output")
        method = json.loads((quantized / QUANT_CONFIG).read_text())["method"]
        quantized_args = read_hf_config(quantized)
        if quantized_args != args:
            raise QuantizationError(f"{quantized} was quantized from a model of another shape than {checkpoint}")
        _check_seq_len(seq_len, args.max_seq_len)
        windows = _text_windows(tokenizer, text, seq_len, max_windows, args.vocab_size)
        reference = perplexity(load_hf_checkpoint(checkpoint, device=device), windows)
        _print_perplexity(reference, perplexity(load_quantized(quantized, device=device), windows), f"int4 {method}")
