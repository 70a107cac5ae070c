"""Mixture-aware, exactly resumable data loading over the DMU's tokenized shards.

The sample stream is a pure function of (seed, mixture history, global sample index):

* each source's token stream is cut into samples of ``seq_len + 1`` tokens (stride ``seq_len``,
  so the last token of one sample is the first target of the next); the last
  ``val_samples_per_source`` samples are held out for validation;
* global sample ``g`` picks its source from a counter-based uniform draw ``u(seed, g)`` against
  the cumulative weights of the mixture version in force at ``g``;
* the ``k``-th draw from source ``s`` is ``perm(seed, s, epoch)[k mod n_s]`` with
  ``epoch = k div n_s``: every sample of a source is seen once before any is seen again.

So the whole state is the global sample count, one counter per source and the mixture history:
a few hundred bytes, independent of the world size. Every rank plans the whole global batch
(cheap: a vector of draws) and takes its own contiguous slice; a resume on any number of ranks
continues the same stream with nothing repeated or skipped.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from heurimentor.contracts.mixtures import MixtureClient, MixtureRequestError
from heurimentor.contracts.shards import ShardFormatError, TokenizedSource, sources_folder

log = logging.getLogger(__name__)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def uniform_draws(seed: int, start: int, count: int) -> np.ndarray:
    """u(seed, g) in [0, 1) for g in [start, start + count): a pure function of (seed, g)."""
    key = _splitmix64(np.array([seed & (2**64 - 1)], dtype=np.uint64))[0]
    with np.errstate(over="ignore"):
        x = key + np.arange(start, start + count, dtype=np.uint64) * _GOLDEN
    return (_splitmix64(x) >> np.uint64(11)).astype(np.float64) / float(2**53)


class SourceSet:
    """The tokenized sources under ``shard_root``, cut into fixed-length samples."""

    def __init__(
        self,
        shard_root: str | Path,
        seq_len: int,
        *,
        names: list[str] = (),
        vocab_size: int,
        val_samples_per_source: int = 0,
        tokenizer_id: str | None = None,
    ):
        root = sources_folder(shard_root, tokenizer_id)
        folders = [root / n for n in names] if names else sorted(p for p in root.iterdir() if (p / "manifest.json").exists())
        if not folders:
            raise ShardFormatError(f"data.shard_root {root}: no tokenized source (no */manifest.json)")
        self.seq_len = seq_len
        self.sources = [TokenizedSource(folder) for folder in folders]
        self.names = [s.name for s in self.sources]
        if len(set(self.names)) != len(self.names):
            raise ShardFormatError(f"data.shard_root {root}: duplicate source names {self.names}")
        tokenizers = {s.manifest.tokenizer_id for s in self.sources}
        if len(tokenizers) > 1:
            raise ShardFormatError(f"data.shard_root {root}: sources use different tokenizers {sorted(tokenizers)}")
        self.train_sizes: list[int] = []
        self.val_sizes: list[int] = []
        for source in self.sources:
            if source.manifest.vocab_size > vocab_size:
                raise ShardFormatError(
                    f"source {source.name}: field vocab_size is {source.manifest.vocab_size}, "
                    f"larger than the model's vocab_size={vocab_size}"
                )
            n = max(0, (source.n_tokens - 1) // seq_len)
            if n <= val_samples_per_source:
                raise ShardFormatError(
                    f"source {source.name}: {source.n_tokens} tokens make {n} samples of "
                    f"seq_len={seq_len}, not more than val_samples_per_source={val_samples_per_source}"
                )
            self.train_sizes.append(n - val_samples_per_source)
            self.val_sizes.append(val_samples_per_source)

    def sample(self, source: int, index: int) -> np.ndarray:
        return self.sources[source].tokens(index * self.seq_len, self.seq_len + 1)

    def val_indices(self, source: int) -> range:
        return range(self.train_sizes[source], self.train_sizes[source] + self.val_sizes[source])


class MixtureSampler:
    """Chooses the global batch of each step: (source index, sample index) pairs."""

    def __init__(self, names: list[str], sizes: list[int], *, seed: int, weights: dict[str, float], version: int | None = None):
        self.names, self.sizes, self.seed = list(names), list(sizes), seed
        self.consumed = 0  # global samples handed out so far
        self.counters = {name: 0 for name in self.names}
        self.history: list[dict] = []  # {"step", "sample", "version", "weights"}; the last one is in force
        self.rejected_version: int | None = None  # a published version with no usable weight, not retried
        self._perms: dict[tuple[int, int], np.ndarray] = {}
        self.set_mixture(0, version, weights)

    @property
    def version(self) -> int | None:
        return self.history[-1]["version"]

    @property
    def weights(self) -> dict[str, float]:
        return self.history[-1]["weights"]

    def _normalise(self, weights: dict[str, float]) -> dict[str, float] | None:
        unknown = sorted(set(weights) - set(self.names))
        if unknown:
            log.warning("mixture names sources this job does not have; ignoring them", extra={"sources": unknown})
        usable = {name: float(weights.get(name, 0.0)) for name in self.names}
        total = sum(usable.values())
        return {name: w / total for name, w in usable.items()} if total > 0 else None

    def set_mixture(self, step: int, version: int | None, weights: dict[str, float]) -> bool:
        """Use ``weights`` from ``step`` on; False (and the old weights kept) when none is usable."""
        normalised = self._normalise(weights)
        if normalised is None:
            log.warning(
                "mixture has no positive weight for any source of this job; keeping the current weights",
                extra={"version": version, "weights": weights},
            )
            return False
        entry = {"step": step, "sample": self.consumed, "version": version, "weights": normalised}
        if self.history and self.history[-1]["step"] == step:
            self.history[-1] = entry  # replaced before any sample was drawn with it
        else:
            self.history.append(entry)
        return True

    def _permutation(self, source: int, epoch: int) -> np.ndarray:
        key = (source, epoch)
        if key not in self._perms:
            self._perms = {k: v for k, v in self._perms.items() if k[0] != source}  # keep one epoch per source
            rng = np.random.default_rng([self.seed, zlib.crc32(self.names[source].encode()), epoch])
            self._perms[key] = rng.permutation(self.sizes[source])
        return self._perms[key]

    def plan(self, count: int) -> list[tuple[int, int]]:
        """The next ``count`` global samples, advancing the state."""
        cdf = np.cumsum([self.weights[name] for name in self.names])
        draws = uniform_draws(self.seed, self.consumed, count)
        # side="right" never lands on a zero-weight source: its cdf entry equals its predecessor's.
        choice = np.minimum(np.searchsorted(cdf / cdf[-1], draws, side="right"), len(self.names) - 1)
        picks = np.empty(count, dtype=np.int64)
        for source in np.unique(choice):
            name, size = self.names[source], self.sizes[source]
            where = np.nonzero(choice == source)[0]
            draw_numbers = self.counters[name] + np.arange(len(where))
            for epoch in np.unique(draw_numbers // size):
                in_epoch = draw_numbers // size == epoch
                picks[where[in_epoch]] = self._permutation(int(source), int(epoch))[draw_numbers[in_epoch] % size]
            self.counters[name] += len(where)
        self.consumed += count
        return list(zip(choice.tolist(), picks.tolist()))

    def version_at(self, step: int) -> int | None:
        version = None
        for entry in self.history:
            if entry["step"] <= step:
                version = entry["version"]
        return version

    def state_dict(self) -> dict:
        return {"seed": self.seed, "consumed": self.consumed, "counters": dict(self.counters), "history": [dict(e) for e in self.history]}

    def load_state_dict(self, state: dict) -> None:
        if state["seed"] != self.seed:
            raise ValueError(f"data sampler: checkpoint was written with seed {state['seed']}, config has seed {self.seed}")
        missing = sorted(n for n, c in state["counters"].items() if c and n not in self.counters)
        if missing:
            log.warning("sources in the checkpoint are gone from data.shard_root; their counters are dropped", extra={"sources": missing})
        self.consumed = state["consumed"]
        self.counters = {name: state["counters"].get(name, 0) for name in self.names}
        self.history = [dict(e) for e in state["history"]]


@dataclass
class Batch:
    step: int
    tokens: torch.Tensor  # (rows, seq_len + 1) int64: inputs are [:, :-1], targets [:, 1:]
    source_index: torch.Tensor  # (rows,) index into SourceSet.names
    sample_ids: list[str]  # "source:index", unique within a source's epoch
    mixture_version: int | None


def batch_slices(counts: list[int]) -> list[tuple[int, int]]:
    """Contiguous [start, end) of the global batch for each rank, given each rank's row count."""
    starts = np.cumsum([0] + counts)
    return [(int(starts[i]), int(starts[i + 1])) for i in range(len(counts))]


class MixtureDataLoader:
    """Each step: plan the global batch, read this rank's slice from the memory-mapped shards."""

    def __init__(self, sources: SourceSet, sampler: MixtureSampler, *, global_batch: int, rank_slice: tuple[int, int]):
        self.sources, self.sampler = sources, sampler
        self.global_batch, self.rank_slice = global_batch, rank_slice

    def next_batch(self, step: int) -> Batch:
        plan = self.sampler.plan(self.global_batch)[self.rank_slice[0] : self.rank_slice[1]]
        tokens = np.stack([self.sources.sample(s, i) for s, i in plan]) if plan else np.zeros((0, self.sources.seq_len + 1), np.int64)
        return Batch(
            step=step,
            tokens=torch.from_numpy(tokens),
            source_index=torch.tensor([s for s, _ in plan], dtype=torch.long),
            sample_ids=[f"{self.sources.names[s]}:{i}" for s, i in plan],
            mixture_version=self.sampler.version,
        )


class MixturePoller:
    """Background long-poll of the DMU's current mixture (ETag / If-None-Match); never raises.

    When the DMU is unreachable the trainer keeps the weights it has: a warning is logged once
    per outage (and ``reachable`` is False) and polling retries with backoff.
    """

    def __init__(self, base_url: str, mixture: str, *, wait: float = 30.0, known_version: int | None = None, token: str | None = None):
        self.base_url, self.mixture, self.wait = base_url, mixture, wait
        self._client = MixtureClient(base_url, token=token, timeout=5.0)
        self._known = known_version
        self._latest = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reachable = True

    def latest(self):
        with self._lock:
            return self._latest

    def poll_once(self, wait: float | None = None) -> bool:
        """One request; True when the DMU answered (changed or not)."""
        try:
            current = self._client.current(self.mixture, known_version=self._known, wait=self.wait if wait is None else wait)
        except MixtureRequestError as e:
            if self.reachable:
                why = f"DMU answered {e.status} for mixture {self.mixture}" if e.status is not None else "DMU unreachable"
                log.warning(
                    "%s; training continues on the last mixture weights",
                    why,
                    extra={"dmu_url": self.base_url, "mixture": self.mixture, "known_version": self._known, "error": repr(e)},
                )
            self.reachable = False
            return False
        if not self.reachable:
            log.info("DMU reachable again", extra={"dmu_url": self.base_url, "mixture": self.mixture})
        self.reachable = True
        if current is not None:
            with self._lock:
                self._latest, self._known = current, current.version
            log.info("mixture version published", extra={"mixture": self.mixture, "version": current.version, "weights": current.weights})
        return True

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            if self.poll_once():
                backoff = 0.5
            else:
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def start(self) -> MixturePoller:
        self._thread = threading.Thread(target=self._run, name=f"mixture-poller-{self.mixture}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._client.close()  # unblocks a long-poll in flight
        if self._thread is not None:
            self._thread.join(timeout=1)  # a long-poll in flight may outlive close(); the thread is a daemon


def sync_mixture(sampler: MixtureSampler, poller: MixturePoller | None, step: int, *, device: torch.device) -> bool:
    """At a step boundary: adopt rank 0's newest mixture on every rank. True when it switched.

    Only rank 0 polls; one broadcast of the version per step keeps every rank on the same
    weights for the same step, which the exactly-resumable stream needs.
    """
    latest = poller.latest() if poller is not None else None
    newest = latest.version if latest is not None else -1
    if dist.is_initialized():
        flag = torch.tensor([newest], dtype=torch.long, device=device)
        dist.broadcast(flag, src=0)
        newest = int(flag.item())
    current = sampler.version if sampler.version is not None else -1
    if newest <= current or newest == sampler.rejected_version:
        return False
    payload = [latest.weights if latest is not None else None]
    if dist.is_initialized():
        dist.broadcast_object_list(payload, src=0, device=device)
    switched = sampler.set_mixture(step, newest, payload[0])
    if switched:
        log.info("switched mixture at step boundary", extra={"step": step, "version": newest})
    else:
        sampler.rejected_version = newest
    return switched


class SampleLog:
    """Append-only JSON lines: which sample ids each step trained on, per rank and run."""

    def __init__(self, folder: str | Path, rank: int):
        self.path = Path(folder) / f"rank{rank}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        run = [time.time_ns()]  # one id per launch, shared by its ranks: a later run supersedes an earlier one's steps
        if dist.is_initialized():
            dist.broadcast_object_list(run, src=0)
        self.run = run[0]
        self.rank = rank

    def write(self, batch: Batch) -> None:
        with open(self.path, "a") as f:
            f.write(
                json.dumps(
                    {"run": self.run, "rank": self.rank, "step": batch.step, "version": batch.mixture_version, "ids": batch.sample_ids}
                )
                + "\n"
            )
