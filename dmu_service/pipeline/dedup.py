"""Exact + MinHash-LSH deduplication against a persistent index of everything already kept.

The index holds uint64 keys (exact: xxh3 of the normalised text; near: LSH band keys) in a few
sorted arrays (merged like an LSM tree, so adding a batch costs O(batch log n), lookups are
vectorized binary searches). It persists as one segment file per committed run step under
``<data_dir>/index/run-<id>/``; a run's segments join the index that later runs load once the run
completes, and vanish if it is discarded.

Within a batch, documents sharing any band key (or hitting the index) are joined by union-find;
each cluster keeps its earliest document unless the cluster touches the index, in which case all
of it is a near-duplicate of something already kept. Every cluster member's keys enter the index,
so later batches and runs join the same clusters.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xxhash

from dmu_service.pipeline.config import DedupConfig
from dmu_service.pipeline.minhash import MinHasher

U64 = np.uint64


class SortedKeySet:
    """A growing set of uint64 keys as a few sorted runs (sizes roughly doubling)."""

    def __init__(self) -> None:
        self._runs: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(r.size for r in self._runs)

    def add(self, keys: np.ndarray) -> None:
        run = np.unique(np.asarray(keys, dtype=U64))
        while self._runs and self._runs[-1].size <= 2 * run.size:
            run = np.union1d(self._runs.pop(), run)
        if run.size:
            self._runs.append(run)

    def contains(self, keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, dtype=U64)
        found = np.zeros(keys.shape, dtype=bool)
        for run in self._runs:
            pos = np.searchsorted(run, keys)
            pos[pos == run.size] = 0
            found |= run[pos] == keys
        return found


def exact_hash(text: str) -> int:
    return xxhash.xxh3_64_intdigest(text.encode("utf-8"))


def _components(n: int, edges_u: np.ndarray, edges_v: np.ndarray) -> np.ndarray:
    """Union-find by min-label propagation: the smallest member index labels each component."""
    labels = np.arange(n)
    if edges_u.size == 0:
        return labels
    while True:
        before = labels.copy()
        low = np.minimum(labels[edges_u], labels[edges_v])
        np.minimum.at(labels, edges_u, low)
        np.minimum.at(labels, edges_v, low)
        labels = labels[labels]  # pointer jumping
        if np.array_equal(labels, before):
            return labels


@dataclass
class DedupDecision:
    verdict: list[str]  # per document: kept | exact_dup | near_dup
    exact_keys: np.ndarray  # keys this batch adds to the index
    band_keys: np.ndarray


class Deduplicator:
    def __init__(self, cfg: DedupConfig):
        self.cfg = cfg
        self.minhasher = MinHasher(cfg)
        self.exact = SortedKeySet()
        self.bands = SortedKeySet()

    def load(self, segment_files: list[Path]) -> None:
        for path in segment_files:
            with np.load(path) as segment:
                self.exact.add(segment["exact"])
                self.bands.add(segment["bands"])

    def decide(self, texts: list[str]) -> DedupDecision:
        n = len(texts)
        verdict = ["kept"] * n
        hashes = np.fromiter((exact_hash(t) for t in texts), dtype=U64, count=n)
        unique = np.ones(n, dtype=bool)
        if self.cfg.exact and n:
            _, first = np.unique(hashes, return_index=True)
            unique[:] = False
            unique[first] = True
            unique &= ~self.exact.contains(hashes)
            for i in np.flatnonzero(~unique):
                verdict[i] = "exact_dup"
        candidates = np.flatnonzero(unique)
        band_keys = np.zeros(0, dtype=U64)
        if self.cfg.near and candidates.size:
            signatures = self.minhasher.signatures([texts[i] for i in candidates])
            keys = self.minhasher.band_keys(signatures.values)[signatures.has_shingles]
            members = candidates[signatures.has_shingles]
            band_keys = keys.ravel()
            near = self._near_duplicates(keys)
            for i in members[near]:
                verdict[i] = "near_dup"
            self.bands.add(band_keys)
        exact_keys = hashes[unique]
        self.exact.add(exact_keys)
        return DedupDecision(verdict, exact_keys, band_keys)

    def _near_duplicates(self, keys: np.ndarray) -> np.ndarray:
        n = len(keys)
        if n == 0:
            return np.zeros(0, dtype=bool)
        hits_index = self.bands.contains(keys).any(axis=1)
        flat = keys.ravel()
        owner = np.repeat(np.arange(n), keys.shape[1])
        order = np.argsort(flat, kind="stable")
        same_as_next = flat[order][1:] == flat[order][:-1]
        labels = _components(n, owner[order][:-1][same_as_next], owner[order][1:][same_as_next])
        cluster_hits = np.zeros(n, dtype=bool)
        np.logical_or.at(cluster_hits, labels, hits_index)
        keep = (labels == np.arange(n)) & ~cluster_hits[labels]
        return ~keep


def write_segment(path: Path, decision: DedupDecision) -> None:
    """Atomically write one index segment (tmp file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        np.savez(f, exact=decision.exact_keys, bands=decision.band_keys)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
