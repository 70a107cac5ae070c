"""Exact + near deduplication against a persistent index of everything already kept.

Near duplicates in two stages:

1. **Candidates** — MinHash-LSH band keys, tuned for recall (28 bands x 4 rows: a pair with
   Jaccard 0.6 collides in some band with probability 0.98, at 0.5 with 0.84).
2. **Verification** — every candidate pair is checked on its signatures: the share of equal
   minima estimates the Jaccard similarity (112 permutations: standard error <= 0.05), and only
   pairs at or above ``threshold`` are duplicates. The index keeps each kept document's signature
   as 8-bit minima (b-bit MinHash, Li & Koenig 2010: two unequal minima agree on the low 8 bits
   with probability 1/256, which the estimate corrects for), so candidates from earlier runs are
   verified the same way.

A document is a duplicate of the earliest kept document it verifies against (the index, or an
earlier kept document of its batch); ``duplicate_of`` names that document and ``similarity`` the
estimate. Only kept documents enter the index, so a chain of edits cannot walk away from the
original.

The index holds uint64 keys (exact: xxh3 of the normalised text; band keys) in a few sorted arrays,
each key with the row of the document that owns it (merged like an LSM tree, so adding a batch
costs O(batch log n), lookups are vectorized binary searches), plus per kept document its id
(run, file, record) and its 8-bit signature. It persists as one segment file per committed run
step under ``<data_dir>/index/run-<id>/``; a run's segments join the index that later runs load
once the run completes, and vanish if it is discarded.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xxhash

from dmu_service.pipeline.config import DedupConfig
from dmu_service.pipeline.minhash import MinHasher

log = logging.getLogger(__name__)
U64 = np.uint64
SIGNATURE_BITS = 8
_CHANCE = 1.0 / (1 << SIGNATURE_BITS)  # two unequal minima agree on their low bits this often


class SortedKeyMap:
    """A growing map uint64 key -> int64 row, as a few sorted runs (sizes roughly doubling).

    A key added twice keeps its first row (the earliest document owns a band)."""

    def __init__(self) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []

    def __len__(self) -> int:
        return sum(keys.size for keys, _ in self._runs)

    def add(self, keys: np.ndarray, rows: np.ndarray) -> None:
        keys, rows = np.asarray(keys, dtype=U64).ravel(), np.asarray(rows, dtype=np.int64).ravel()
        found = self.lookup(keys)
        keys, rows = keys[found < 0], rows[found < 0]
        keys, first = np.unique(keys, return_index=True)
        run = (keys, rows[first])
        while self._runs and self._runs[-1][0].size <= 2 * run[0].size:
            old_keys, old_rows = self._runs.pop()
            merged_keys = np.concatenate([old_keys, run[0]])
            order = np.argsort(merged_keys, kind="stable")
            run = (merged_keys[order], np.concatenate([old_rows, run[1]])[order])
        if run[0].size:
            self._runs.append(run)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Row of each key, -1 where absent."""
        keys = np.asarray(keys, dtype=U64)
        rows = np.full(keys.shape, -1, dtype=np.int64)
        for run_keys, run_rows in self._runs:
            pos = np.searchsorted(run_keys, keys)
            pos[pos == run_keys.size] = 0
            hit = (run_keys[pos] == keys) & (rows < 0)
            rows[hit] = run_rows[pos[hit]]
        return rows


class _Growable:
    """An append-only array (amortised doubling), rows along axis 0."""

    def __init__(self, width: int, dtype) -> None:
        self._data = np.zeros((1024, width), dtype=dtype)
        self.size = 0

    def append(self, rows: np.ndarray) -> None:
        need = self.size + len(rows)
        if need > len(self._data):
            grown = np.zeros((max(need, 2 * len(self._data)), self._data.shape[1]), dtype=self._data.dtype)
            grown[: self.size] = self._data[: self.size]
            self._data = grown
        self._data[self.size : need] = rows
        self.size = need

    @property
    def view(self) -> np.ndarray:
        return self._data[: self.size]


def exact_hash(text: str) -> int:
    return xxhash.xxh3_64_intdigest(text.encode("utf-8"))


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Jaccard estimates of row pairs of 8-bit signatures (corrected for chance agreement)."""
    agree = (a == b).mean(axis=-1)
    return np.clip((agree - _CHANCE) / (1 - _CHANCE), 0.0, 1.0)


@dataclass
class DedupDecision:
    """Per document: verdict (kept | exact_dup | near_dup), the kept document it duplicates and the
    similarity estimate; plus what the batch adds to the index (its kept documents)."""

    verdict: list[str]
    duplicate_of: list[tuple[int, int, int] | None]
    similarity: list[float | None]
    exact_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, U64))
    band_keys: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), U64))
    signatures: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.uint8))
    ids: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))
    has_bands: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))


class Deduplicator:
    def __init__(self, cfg: DedupConfig):
        self.cfg = cfg
        self.minhasher = MinHasher(cfg)
        self.exact = SortedKeyMap()
        self.bands = SortedKeyMap()
        self.ids = _Growable(3, np.int64)
        self.signatures = _Growable(cfg.num_perm, np.uint8)

    def __len__(self) -> int:
        return self.ids.size

    def load(self, segment_files: list[Path]) -> None:
        for path in segment_files:
            with np.load(path) as segment:
                if "signatures" not in segment.files:
                    log.warning("index segment %s predates verified near dedup; its documents only dedup exactly", path)
                    self.exact.add(segment["exact"], np.full(segment["exact"].size, -1))
                    continue
                self._add(
                    DedupDecision(
                        [], [], [], segment["exact"], segment["bands"], segment["signatures"], segment["ids"], segment["has_bands"]
                    )
                )

    def _add(self, decision: DedupDecision) -> None:
        rows = np.arange(self.ids.size, self.ids.size + len(decision.ids), dtype=np.int64)
        self.ids.append(decision.ids)
        self.signatures.append(decision.signatures)
        self.exact.add(decision.exact_keys, rows)
        with_bands = decision.has_bands.astype(bool)
        if with_bands.any():
            keys = decision.band_keys[with_bands]
            self.bands.add(keys.ravel(), np.repeat(rows[with_bands], keys.shape[1]))

    def decide(self, texts: list[str], ids: list[tuple[int, int, int]] | None = None) -> DedupDecision:
        """Verdicts for a batch in stream order; ``ids`` (run, file, record) name the documents."""
        n = len(texts)
        ids_array = np.asarray(ids if ids is not None else [(0, 0, i) for i in range(n)], dtype=np.int64).reshape(n, 3)
        verdict = ["kept"] * n
        duplicate_of: list[tuple[int, int, int] | None] = [None] * n
        similarity: list[float | None] = [None] * n
        hashes = np.fromiter((exact_hash(t) for t in texts), dtype=U64, count=n)
        unique = np.ones(n, dtype=bool)
        if self.cfg.exact and n:
            index_rows = self.exact.lookup(hashes)
            _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
            for i in range(n):
                earlier = first[inverse[i]]
                if index_rows[i] >= 0 or earlier < i:
                    unique[i] = False
                    verdict[i], similarity[i] = "exact_dup", 1.0
                    duplicate_of[i] = (
                        tuple(int(v) for v in self.ids.view[index_rows[i]])
                        if index_rows[i] >= 0
                        else tuple(int(v) for v in ids_array[earlier])
                    )
        band_keys = np.zeros((n, self.cfg.bands), dtype=U64)
        signatures8 = np.zeros((n, self.cfg.num_perm), dtype=np.uint8)
        has_bands = np.zeros(n, dtype=bool)
        candidates = np.flatnonzero(unique)
        if self.cfg.near and candidates.size:
            signatures = self.minhasher.signatures([texts[i] for i in candidates])
            members = candidates[signatures.has_shingles]
            band_keys[members] = self.minhasher.band_keys(signatures.values[signatures.has_shingles])
            signatures8[candidates] = (signatures.values & np.uint32((1 << SIGNATURE_BITS) - 1)).astype(np.uint8)
            has_bands[members] = True
            self._near_duplicates(members, band_keys, signatures8, ids_array, verdict, duplicate_of, similarity)
        kept = np.array([v == "kept" for v in verdict], dtype=bool)
        decision = DedupDecision(
            verdict, duplicate_of, similarity, hashes[kept], band_keys[kept], signatures8[kept], ids_array[kept], has_bands[kept]
        )
        self._add(decision)
        return decision

    def _near_duplicates(
        self,
        members: np.ndarray,
        band_keys: np.ndarray,
        signatures8: np.ndarray,
        ids: np.ndarray,
        verdict: list[str],
        duplicate_of: list,
        similarity: list,
    ) -> None:
        if members.size == 0:
            return
        threshold = self.cfg.threshold
        keys = band_keys[members]
        # Against the index: one owner per band key; verify each distinct (document, owner) pair.
        owners = self.bands.lookup(keys)
        doc_of = np.repeat(members, keys.shape[1])
        hit = owners.ravel() >= 0
        pairs = np.unique(np.stack([doc_of[hit], owners.ravel()[hit]], axis=1), axis=0) if hit.any() else np.zeros((0, 2), np.int64)
        best_index: dict[int, tuple[float, int]] = {}
        if len(pairs):
            sims = estimated_jaccard(signatures8[pairs[:, 0]], self.signatures.view[pairs[:, 1]])
            for (doc, row), sim in zip(pairs.tolist(), sims.tolist(), strict=True):
                if sim >= threshold and sim > best_index.get(doc, (-1.0, -1))[0]:
                    best_index[doc] = (sim, row)
        # Inside the batch: documents sharing a band key, earlier one first.
        flat = keys.ravel()
        owner = np.repeat(members, keys.shape[1])
        order = np.argsort(flat, kind="stable")
        same = flat[order][1:] == flat[order][:-1]
        first_of_group = np.maximum.accumulate(np.where(np.concatenate([[True], ~same]), np.arange(flat.size), 0))
        later = owner[order][1:][same]
        earlier = owner[order][first_of_group[1:][same]]
        batch_pairs = np.unique(np.stack([earlier, later], axis=1), axis=0) if later.size else np.zeros((0, 2), np.int64)
        batch_pairs = batch_pairs[batch_pairs[:, 0] < batch_pairs[:, 1]]
        earlier_of: dict[int, list[tuple[float, int]]] = {}
        if len(batch_pairs):
            sims = estimated_jaccard(signatures8[batch_pairs[:, 0]], signatures8[batch_pairs[:, 1]])
            for (a, b), sim in zip(batch_pairs.tolist(), sims.tolist(), strict=True):
                if sim >= threshold:
                    earlier_of.setdefault(b, []).append((sim, a))
        # Greedy in stream order: a document duplicates the index, or an earlier document that was kept.
        for doc in sorted(set(best_index) | set(earlier_of)):
            if doc in best_index:
                sim, row = best_index[doc]
                verdict[doc], similarity[doc] = "near_dup", round(sim, 4)
                duplicate_of[doc] = tuple(int(v) for v in self.ids.view[row])
                continue
            kept = [(sim, a) for sim, a in earlier_of[doc] if verdict[a] == "kept"]
            if kept:
                sim, a = max(kept)
                verdict[doc], similarity[doc] = "near_dup", round(sim, 4)
                duplicate_of[doc] = tuple(int(v) for v in ids[a])


def write_segment(path: Path, decisions: list[DedupDecision], *, num_perm: int, bands: int) -> None:
    """Atomically write one index segment (tmp file, fsync, rename): the kept documents of ``decisions``."""

    def stacked(name: str, empty: np.ndarray) -> np.ndarray:
        parts = [getattr(d, name) for d in decisions if len(getattr(d, name))]
        return np.concatenate(parts) if parts else empty

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        np.savez(
            f,
            exact=stacked("exact_keys", np.zeros(0, U64)),
            bands=stacked("band_keys", np.zeros((0, bands), U64)),
            signatures=stacked("signatures", np.zeros((0, num_perm), np.uint8)),
            ids=stacked("ids", np.zeros((0, 3), np.int64)),
            has_bands=stacked("has_bands", np.zeros(0, bool)),
        )
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
