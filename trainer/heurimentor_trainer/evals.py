"""Interval evaluations: held-out validation loss per source and pluggable downstream tasks.

Under FSDP2 every forward is a collective (parameters are all-gathered), so each rank runs the
same number of forwards: work is dealt round-robin and short ranks repeat a row with weight 0.
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from heurimentor_trainer.data import SourceSet


def _world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        dist.all_reduce(t)
    return t


def _deal(n_items: int, per_call: int) -> list[list[int]]:
    """Item indices for each of this rank's forward calls; the same number of calls on every rank."""
    rank, world = _world()
    calls = math.ceil(n_items / (per_call * world)) if n_items else 0
    out = []
    for c in range(calls):
        start = (c * world + rank) * per_call
        out.append(list(range(start, min(start + per_call, n_items))))
    return out


@torch.no_grad()
def validation_loss(
    model: nn.Module, sources: SourceSet, *, max_samples: int, micro_batch: int, device: torch.device, autocast
) -> dict[str, float]:
    """Mean next-token loss on each source's held-out samples (all ranks together)."""
    sums = torch.zeros(2 * len(sources.names), dtype=torch.float64, device=device)
    for s in range(len(sources.names)):
        indices = list(sources.val_indices(s))[:max_samples]
        for call in _deal(len(indices), micro_batch):
            rows = call or [0]  # a padding forward keeps FSDP2 collectives in step
            tokens = torch.from_numpy(np.stack([sources.sample(s, indices[i]) for i in rows])).to(device)
            with autocast:
                logits = model(tokens[:, :-1])
            loss = F.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten(), reduction="sum")
            if call:
                sums[2 * s] += loss.double()
                sums[2 * s + 1] += tokens[:, 1:].numel()
    _all_reduce(sums)
    return {name: (sums[2 * s] / sums[2 * s + 1]).item() for s, name in enumerate(sources.names) if sums[2 * s + 1] > 0}


class DownstreamTask(Protocol):
    name: str

    def evaluate(self, model: nn.Module, *, device: torch.device, autocast) -> float: ...


class MultipleChoiceTask:
    """Multiple-choice scoring on a local JSONL file: the choice with the highest log-likelihood wins.

    Each line: ``{"context": str, "choices": [str, ...], "answer": int}`` (needs ``tokenizer``, a
    ``tokenizers`` JSON file) or pre-tokenized ``{"context_ids": [...], "choices_ids": [[...], ...],
    "answer": int}``. Scores are mean log-probability per choice token (length-normalised) unless
    ``normalize: false``. Returns accuracy in [0, 1].
    """

    def __init__(self, path: str, name: str | None = None, tokenizer: str | None = None, normalize: bool = True, limit: int | None = None):
        self.path = Path(path)
        self.name = name or self.path.stem
        self.normalize = normalize
        encoder = None
        if tokenizer:
            from tokenizers import Tokenizer

            encoder = Tokenizer.from_file(tokenizer)
        self.examples: list[tuple[list[int], list[list[int]], int]] = []
        for line_no, line in enumerate(self.path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if "context_ids" in row:
                    context, choices = list(row["context_ids"]), [list(c) for c in row["choices_ids"]]
                elif encoder is None:
                    raise ValueError("text rows need the task's tokenizer option")
                else:
                    context = encoder.encode(row["context"], add_special_tokens=False).ids
                    choices = [encoder.encode(c, add_special_tokens=False).ids for c in row["choices"]]
                answer = int(row["answer"])
                if not context or not choices or any(not c for c in choices) or not 0 <= answer < len(choices):
                    raise ValueError("needs a non-empty context, non-empty choices and 0 <= answer < len(choices)")
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"downstream task {self.name}: {self.path}:{line_no}: {e}") from e
            self.examples.append((context, choices, answer))
            if limit and len(self.examples) >= limit:
                break

    @torch.no_grad()
    def evaluate(self, model: nn.Module, *, device: torch.device, autocast) -> float:
        correct = torch.zeros(2, dtype=torch.float64, device=device)
        for call in _deal(len(self.examples), 1):
            context, choices, answer = self.examples[call[0] if call else 0]
            seqs = [context + choice for choice in choices]
            width = max(map(len, seqs))
            tokens = torch.zeros(len(seqs), width, dtype=torch.long, device=device)
            for i, seq in enumerate(seqs):
                tokens[i, : len(seq)] = torch.tensor(seq[:width])
            with autocast:
                logits = model(tokens[:, :-1])
            logprobs = logits.float().log_softmax(-1).gather(-1, tokens[:, 1:, None])[..., 0]
            scores = []
            for i, choice in enumerate(choices):
                span = logprobs[i, len(context) - 1 : len(context) - 1 + len(choice)]
                scores.append((span.mean() if self.normalize else span.sum()).item())
            if call:
                correct[0] += float(max(range(len(scores)), key=scores.__getitem__) == answer)
                correct[1] += 1
        _all_reduce(correct)
        return (correct[0] / correct[1]).item() if correct[1] > 0 else float("nan")


TASK_KINDS = {"multiple_choice": MultipleChoiceTask}


def build_downstream(spec: dict) -> DownstreamTask:
    """``{kind: multiple_choice, path: …}``, or ``{kind: "package.module:factory", …}`` for a plug-in."""
    spec = dict(spec)
    kind = spec.pop("kind", "multiple_choice")
    if kind in TASK_KINDS:
        factory = TASK_KINDS[kind]
    elif ":" in kind:
        module, _, attr = kind.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"metrics.downstream kind {kind!r}: cannot import: {e}") from e
    else:
        raise ValueError(f"metrics.downstream kind {kind!r}: unknown; built in: {', '.join(TASK_KINDS)}, or module:factory")
    try:
        return factory(**spec)
    except TypeError as e:
        raise ValueError(f"metrics.downstream kind {kind!r}: bad options {sorted(spec)}: {e}") from e
