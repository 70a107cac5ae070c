"""Record real training curves for ``bench/tsm_detection.py``: this project's Trainer (``debug`` preset, CPU)
on the bundled sample corpus (real English and Chinese prose, tokenized with the project's byte-level
BPE), with the mixture changed mid-run as a person's PUT or the TSM's policy would change it. Each run
is written to ``bench/tsm_curves/<name>.json`` with its labelled events.

    python bench/tsm_record_curves.py [--steps 400]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from heurimentor.contracts.shards import Manifest, write_shard  # noqa: E402

CORPUS = Path(__file__).resolve().parent.parent / "trainer" / "heurimentor_trainer" / "sample_corpus"
OUT = Path(__file__).resolve().parent / "tsm_curves"
log = logging.getLogger("tsm_record_curves")


def write_sources(root: Path, tokenizer_dir: Path) -> int:
    from tokenizers import Tokenizer

    from heurimentor_trainer.tokenizer import train_tokenizer

    report = train_tokenizer([CORPUS / "en.txt"], [CORPUS / "zh.txt"], tokenizer_dir, vocab_size=512, min_frequency=1)
    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    vocab = report.vocab_size
    for name in ("en", "zh"):
        lines = [line for line in (CORPUS / f"{name}.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
        docs = [np.array(tokenizer.encode(line).ids, dtype=np.int64) for line in lines]
        folder = root / name
        folder.mkdir(parents=True)
        shard = write_shard(folder / "00000.bin", docs, vocab)
        Manifest(source=name, tokenizer_id="sample-bpe-512", vocab_size=vocab, shards=[shard]).write(folder)
    return vocab


def record(name: str, *, steps: int, change_at: int, before: dict[str, float], after: dict[str, float], seed: int, batch: int) -> dict:
    from heurimentor_trainer.config import DataConfig, MetricsConfig, OptimConfig, TrainConfig
    from heurimentor_trainer.train import Trainer

    with tempfile.TemporaryDirectory() as work:
        root = Path(work) / "shards"
        vocab = write_sources(root, Path(work) / "tokenizer")
        cfg = TrainConfig(
            job=f"record-{name}",
            preset="debug",
            model={"vocab_size": vocab, "max_seq_len": 32},
            steps=steps,
            global_batch=batch,
            micro_batch=batch,
            seq_len=32,
            seed=seed,
            device="cpu",
            optim=OptimConfig(lr=2e-3, warmup_steps=30),
            data=DataConfig(shard_root=str(root), static_weights=before),
            metrics=MetricsConfig(eval_interval=steps),
        )
        rows = []
        with Trainer(cfg) as trainer:
            for step in range(1, steps + 1):
                if step == change_at:
                    trainer.sampler.set_mixture(step, 2, after)  # as the poller applies a new DMU version
                point = trainer.train_step()
                rows.append(point)
    steps_ = [p.step for p in rows]
    index = steps_.index(change_at)
    sources = sorted({s for p in rows for s in p.source_losses})
    curve = {
        "steps": steps_,
        "loss": [p.scalars["loss"] for p in rows],
        "grad_norm": [p.scalars["grad_norm"] for p in rows],
        "lr": [p.scalars["lr"] for p in rows],
        "step_time": [p.scalars["step_time_seconds"] for p in rows],
        "mixture_version": [p.mixture_version or 1 for p in rows],
        "world_size": [1] * len(rows),
        "source_losses": {s: [p.source_losses.get(s, float("nan")) for p in rows] for s in sources},
    }
    level = lambda a, b: float(np.nanmean(curve["loss"][a:b]))  # noqa: E731
    curve["events"] = [
        {
            "kind": "mixture_change",
            "onset": index,
            "end": index + 100,
            "height": level(index, index + 20) / level(index - 20, index),
            "detail": f"{before} -> {after} at step {change_at}",
        }
    ]
    curve["recorded_with"] = {
        "preset": "debug",
        "seq_len": 32,
        "global_batch": batch,
        "device": "cpu",
        "corpus": "trainer/heurimentor_trainer/sample_corpus",
        "seed": seed,
    }
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    OUT.mkdir(exist_ok=True)
    runs = {
        # More weight on the harder source (zh, more tokens per character): the blended loss moves up.
        "sample_corpus_mix_to_zh": dict(before={"en": 0.8, "zh": 0.2}, after={"en": 0.2, "zh": 0.8}, seed=0, batch=8),
        "sample_corpus_mix_to_en": dict(before={"en": 0.3, "zh": 0.7}, after={"en": 0.9, "zh": 0.1}, seed=1, batch=16),
    }
    for name, spec in runs.items():
        curve = record(name, steps=args.steps, change_at=args.steps // 2, **spec)
        (OUT / f"{name}.json").write_text(json.dumps(curve) + "\n")
        log.warning("recorded %s: %d steps, mixture change x%.2f", name, len(curve["steps"]), curve["events"][0]["height"])


if __name__ == "__main__":
    main()
