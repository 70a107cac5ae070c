"""Adaptive vs static data mixture with the real trainer components on CPU.

Four tokenized sources (written in the DMU shard format) of different difficulty:
  easy     counting modulo 32 (next = current + 1 within 32 tokens): learned in a few dozen steps
  bigram   a sparse random first-order Markov chain over the vocabulary (4 successors per token)
  trigram  a sparse random second-order chain: the next token depends on the last token and on
           the one before it modulo 4 (2048 contexts, 4 successors each)
  random   uniform random tokens: cannot be learned (loss stays at ln V)
Training starts from the pool as collected (equal parts of all four). The objective is validation
loss on a fixed held-out target mixture, the same held-out samples for every run: by default
(`--target learnable`) equal parts of easy/bigram/trigram, the data we want a model of, with the
random source a junk source in the pool; `--target all` puts the random source in the target too
(then its loss, which rises as the model sharpens, is part of the objective). The policies are not
told the target: they start from the pool mixture and see only per-source training losses. Every run is the
product's own training loop: a ``heurimentor_trainer.train.Trainer`` (`debug` preset on CPU) whose
``train_step()`` runs the data path, optimizer, LR schedule and per-source loss accounting the
workers run; the bench only reads the step's per-source losses and calls validation_loss. The static run keeps the target mixture; adaptive
runs let a TSM policy (tsm_service.policies, the same MixtureController + guardrails the service
runs) change the sampler's mixture every `--update-every` steps from the mean per-source training
loss of those steps, as the service does from ingested metrics.

Prints, per seed and policy, the first step at which the run's validation loss reaches the static
run's final validation loss, and the ratio to the static run's step count (target <= 0.8).

    python bench/tsm_adaptive_mixture.py [--steps 400] [--seeds 0 1 2] [--policies learning_progress odm]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# One thread: on a shared 2-core machine, two OpenMP threads per tiny matmul are ~10x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from heurimentor.contracts.shards import Manifest, write_shard  # noqa: E402
from heurimentor_trainer.config import DataConfig, MetricsConfig, OptimConfig, TrainConfig  # noqa: E402
from heurimentor_trainer.evals import validation_loss  # noqa: E402
from heurimentor_trainer.train import Trainer  # noqa: E402
from tsm_service.config import GuardrailConfig  # noqa: E402
from tsm_service.policies import MixtureController, make_policy  # noqa: E402

VOCAB = 512
SEQ_LEN = 128


def _documents(kind: str, rng: np.random.Generator, n_docs: int, length: int) -> list[np.ndarray]:
    if kind == "easy":
        starts = rng.integers(0, 32, n_docs)
        return [(start + np.arange(length)) % 32 for start in starts]
    if kind == "random":
        return [rng.integers(0, VOCAB, length) for _ in range(n_docs)]
    successors = rng.integers(0, VOCAB, (VOCAB, 4)) if kind == "bigram" else rng.integers(0, VOCAB, (4, VOCAB, 4))
    probabilities = np.array([0.55, 0.25, 0.12, 0.08])
    docs = []
    for _ in range(n_docs):
        doc = np.empty(length, dtype=np.int64)
        doc[:2] = rng.integers(0, VOCAB, 2)
        choices = rng.choice(4, size=length, p=probabilities)
        for i in range(2, length):
            table = successors[doc[i - 1]] if kind == "bigram" else successors[doc[i - 2] % 4, doc[i - 1]]
            doc[i] = table[choices[i]]
        docs.append(doc)
    return docs


def write_sources(root: Path, *, samples_per_source: int) -> list[str]:
    """One tokenized source per kind, each ``samples_per_source`` samples of SEQ_LEN + 1 tokens."""
    names = ["easy", "bigram", "trigram", "random"]
    rng = np.random.default_rng(1234)  # the data is the same for every seed and policy
    for name in names:
        folder = root / name
        folder.mkdir(parents=True)
        docs = _documents(name, rng, samples_per_source, SEQ_LEN + 1)
        shard = write_shard(folder / "00000.bin", docs, VOCAB)
        Manifest(source=name, tokenizer_id="synthetic-512", vocab_size=VOCAB, shards=[shard]).write(folder)
    return names


def train_run(
    root: Path,
    policy: str,
    *,
    seed: int,
    steps: int,
    batch: int,
    eval_every: int,
    val_samples: int,
    update_every: int,
    guardrails: GuardrailConfig,
    params: dict[str, float],
    target_sources: list[str],
) -> dict:
    """One run of the product's Trainer; returns its validation curve (target mixture) and mixture history."""
    names = sorted(p.name for p in root.iterdir() if (p / "manifest.json").exists())
    start = {name: 1.0 / len(names) for name in names}  # the pool as collected
    target = {name: 1.0 / len(target_sources) for name in target_sources}  # what validation measures
    cfg = TrainConfig(
        job=f"bench-{policy}-{seed}",
        preset="debug",
        model={"vocab_size": VOCAB, "max_seq_len": SEQ_LEN},
        steps=steps,
        global_batch=batch,
        micro_batch=batch,
        seq_len=SEQ_LEN,
        seed=seed,
        device="cpu",
        optim=OptimConfig(lr=3e-3, warmup_steps=20),
        data=DataConfig(shard_root=str(root), static_weights=start, val_samples_per_source=val_samples),
        metrics=MetricsConfig(eval_interval=steps),
    )  # the bench measures its own target mixture below
    curve, mixtures = [], [(0, dict(start))]
    with Trainer(cfg) as trainer:
        sources, sampler = trainer.sources, trainer.sampler
        controller = MixtureController(make_policy(policy, sources.names, params=params), guardrails)
        window = {name: [0.0, 0.0] for name in sources.names}  # loss sum, tokens since the last observation

        def evaluate(step: int) -> None:
            trainer.model.eval()
            val = validation_loss(
                trainer.model, sources, max_samples=val_samples, micro_batch=val_samples, device=trainer.device, autocast=trainer.autocast
            )
            trainer.model.train()
            curve.append((step, sum(target[s] * val[s] for s in target), val))

        evaluate(0)
        for step in range(1, steps + 1):
            trainer.train_step()
            for name, (loss, tokens) in trainer.source_sums.items():
                window[name][0] += loss
                window[name][1] += tokens
            if step % update_every == 0:
                losses = {name: loss / tokens for name, (loss, tokens) in window.items() if tokens > 0}
                window = {name: [0.0, 0.0] for name in sources.names}
                decision = controller.step(current=sampler.weights, losses=losses, step=step)
                if decision is not None:
                    sampler.set_mixture(step + 1, len(mixtures), decision.weights)
                    mixtures.append((step, decision.weights))
            if step % eval_every == 0:
                evaluate(step)
    return {"curve": curve, "mixtures": mixtures}


def first_step_at_or_below(curve: list[tuple], level: float) -> int | None:
    return next((step for step, value, _ in curve if value <= level + 1e-9), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--policies", nargs="+", default=["learning_progress", "odm"])
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--val-samples", type=int, default=32)
    parser.add_argument("--update-every", type=int, default=10, help="steps per observation (the service's evaluation)")
    parser.add_argument("--cooldown", type=int, default=20)
    parser.add_argument("--max-change", type=float, default=0.1)
    parser.add_argument("--floor", type=float, default=0.02)
    parser.add_argument("--samples-per-source", type=int, default=1500)
    parser.add_argument("--target", choices=["learnable", "all"], default="learnable")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    target_sources = ["easy", "bigram", "trigram"] + (["random"] if args.target == "all" else [])
    guardrails = GuardrailConfig(weight_floor=args.floor, max_change=args.max_change, cooldown_steps=args.cooldown)

    with tempfile.TemporaryDirectory(prefix="tsm-bench-") as tmp:
        root = Path(tmp)
        write_sources(root, samples_per_source=args.samples_per_source)
        print(
            f"sources easy/bigram/trigram/random, vocab {VOCAB}, seq_len {SEQ_LEN}, batch {args.batch}, {args.steps} steps; "
            f"start = equal parts of all four; target = equal parts of {'/'.join(target_sources)}; guardrails floor={args.floor} max_change={args.max_change} cooldown={args.cooldown}"
        )
        ratios: dict[str, list[float]] = {p: [] for p in args.policies}

        def run_policy(policy: str, seed: int) -> dict:  # every run alike but for its policy
            return train_run(
                root,
                policy,
                seed=seed,
                steps=args.steps,
                batch=args.batch,
                eval_every=args.eval_every,
                val_samples=args.val_samples,
                update_every=args.update_every,
                guardrails=guardrails,
                params={},
                target_sources=target_sources,
            )

        for seed in args.seeds:
            started = time.perf_counter()
            static = run_policy("static", seed)
            final = static["curve"][-1][1]
            static_steps = first_step_at_or_below(static["curve"], final)
            print(
                f"seed {seed}: static final val loss {final:.4f} (first reached at step {static_steps}); "
                f"per source { ({k: round(v, 3) for k, v in static['curve'][-1][2].items()}) }  [{time.perf_counter() - started:.0f}s]"
            )
            for policy in args.policies:
                started = time.perf_counter()
                run = run_policy(policy, seed)
                reached = first_step_at_or_below(run["curve"], final)
                ratio = (reached / static_steps) if reached is not None else math.inf
                ratios[policy].append(ratio)
                weights = {k: round(float(v), 3) for k, v in run["mixtures"][-1][1].items()}
                print(
                    f"  {policy:<18} final val {run['curve'][-1][1]:.4f}; reaches static's final at step "
                    f"{reached if reached is not None else 'never'} -> ratio {ratio:.2f}; {len(run['mixtures']) - 1} updates, "
                    f"last mixture {weights}  [{time.perf_counter() - started:.0f}s]"
                )
        print("steps to reach the static run's final validation loss, adaptive / static (target <= 0.8):")
        for policy, values in ratios.items():
            finite = [v for v in values if math.isfinite(v)]
            summary = f"mean {statistics.mean(finite):.2f}" if finite else "never reached"
            print(
                f"  {policy:<18} {' '.join(f'{v:.2f}' for v in values)}  ({summary} over seeds {args.seeds}"
                f"{'' if len(finite) == len(values) else f'; {len(values) - len(finite)} never reached'})"
            )


if __name__ == "__main__":
    main()
