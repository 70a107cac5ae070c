"""What the demo checks on the trained model: the unigram baseline of each source, int4 perplexity
per language, and the Hugging Face export as ``transformers`` loads it (logits, greedy text).

Every figure is computed on the held-out samples the trainer's validation loss uses: the last
``VAL_SAMPLES`` samples of each source (``SourceSet.val_indices``), never trained on.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from heurimentor.demo.corpus import JUNK, SOURCES

SEQ_LEN = 128
VAL_SAMPLES = 16  # per source: 16 x 128 = 2,048 held-out target tokens
PROMPTS = {"en": "The command", "zh": "这个命令"}


def demo_model_args(vocab_size: int) -> dict:
    """A small Aquila2: 4 layers, GQA (4 query heads share 2 KV heads), SwiGLU, untied embeddings."""
    return {
        "dim": 128,
        "n_layers": 4,
        "n_heads": 4,
        "n_kv_heads": 2,
        "ffn_hidden_dim": 384,
        "vocab_size": vocab_size,
        "max_seq_len": SEQ_LEN,
    }


def parameter_count(model: dict) -> int:
    from heurimentor_trainer.model import ModelArgs

    return ModelArgs(**model).num_params()


def _sources(shard_root: Path, vocab_size: int):
    from heurimentor_trainer.data import SourceSet

    return SourceSet(shard_root, SEQ_LEN, vocab_size=vocab_size, val_samples_per_source=VAL_SAMPLES)


def unigram_baselines(sources, vocab_size: int) -> dict[str, float]:
    """Cross-entropy (nats/token) on each source's held-out targets of the source's own unigram
    distribution, fit on its training tokens (add-one smoothing): what a model that ignores context
    scores at best on that source."""
    out = {}
    for s, name in enumerate(sources.names):
        train = sources.sources[s].tokens(0, sources.train_sizes[s] * SEQ_LEN + 1)
        counts = np.bincount(train, minlength=vocab_size).astype(np.float64) + 1.0
        log_p = np.log(counts / counts.sum())
        targets = np.concatenate([sources.sample(s, i)[1:] for i in sources.val_indices(s)])
        out[name] = float(-log_p[targets].mean())
    return out


def _windows(sources, names: list[str]):
    import torch

    rows = [sources.sample(sources.names.index(n), i) for n in names for i in sources.val_indices(sources.names.index(n))]
    return torch.from_numpy(np.stack(rows).astype(np.int64))


def _calibration(sources, per_source: int = 16):
    import torch

    rows = []
    for source in SOURCES:
        s = sources.names.index(source.name)
        step = max(sources.train_sizes[s] // per_source, 1)
        rows += [sources.sample(s, i * step)[:-1] for i in range(min(per_source, sources.train_sizes[s]))]
    return torch.from_numpy(np.stack(rows).astype(np.int64))


def run_checks(work: Path, shard_root: Path, curves: dict[str, list[tuple[int, float]]], *, console: Console) -> dict:
    import torch
    import transformers

    from heurimentor_trainer.hf import export_training_checkpoint, load_hf_checkpoint
    from heurimentor_trainer.quantize import perplexity, quantize_model, save_quantized

    transformers.utils.logging.disable_progress_bar()  # the demo's own bar says what is happening
    hf_dir, int4_dir = work / "hf", work / "int4"
    languages = {lang: [s.name for s in SOURCES if s.language == lang] for lang in ("en", "zh")}
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("export the final checkpoint (Hugging Face format)", total=6)
        args = export_training_checkpoint(work / "checkpoints", hf_dir)
        tokenizer = transformers.PreTrainedTokenizerFast(
            tokenizer_file=str(work / "tokenizer" / "tokenizer.json"), bos_token="<s>", eos_token="</s>", pad_token="<pad>"
        )
        tokenizer.save_pretrained(hf_dir)  # AutoTokenizer.from_pretrained(hf) works on the export alone
        sources = _sources(shard_root, args.vocab_size)

        progress.update(task, advance=1, description="unigram baselines")
        unigram = unigram_baselines(sources, args.vocab_size)

        progress.update(task, advance=1, description="perplexity fp32, per language")
        model = load_hf_checkpoint(hf_dir)
        windows = {lang: _windows(sources, names) for lang, names in languages.items()}
        fp32 = {lang: perplexity(model, w) for lang, w in windows.items()}

        progress.update(task, advance=1, description="GPTQ int4 (group 128), calibrated on training samples")
        summary = quantize_model(model, method="gptq", calibration=_calibration(sources))
        save_quantized(model, int4_dir, summary)
        progress.update(task, advance=1, description="perplexity int4, per language")
        int4 = {lang: perplexity(model, w) for lang, w in windows.items()}

        progress.update(task, advance=1, description="transformers: reload the export, compare logits, generate")
        ours = load_hf_checkpoint(hf_dir).eval()
        theirs = transformers.LlamaForCausalLM.from_pretrained(hf_dir).eval()
        probe = torch.cat([w[:2, :-1] for w in windows.values()])
        with torch.no_grad():
            difference = (theirs(probe).logits - ours(probe)).abs().max().item()
            generations = {}
            for lang, prompt in PROMPTS.items():
                ids = tokenizer(prompt, return_tensors="pt").input_ids
                out = theirs.generate(ids, max_new_tokens=40, do_sample=False, pad_token_id=tokenizer.pad_token_id)
                generations[lang] = (prompt, tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))
        progress.update(task, advance=1, description="checks done")

    final_val = {name: points[-1][1] for name, points in ((k[4:], v) for k, v in curves.items() if k.startswith("val/")) if points}
    return {
        "parameters": args.num_params(),
        "unigram": unigram,
        "final_val": final_val,
        "perplexity_fp32": fp32,
        "perplexity_int4": int4,
        "retained": {lang: fp32[lang] / int4[lang] for lang in fp32},
        "int4": asdict(summary),
        "hf_max_logit_difference": difference,
        "generations": generations,
        "junk": JUNK.name,
        "nats_fp32": {lang: math.log(v) for lang, v in fp32.items()},
    }
