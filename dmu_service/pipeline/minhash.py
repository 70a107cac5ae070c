"""Vectorized MinHash + LSH band keys for whole batches of documents (numpy, no per-shingle Python).

Shingles: lowercased word n-grams for alphabetic text, character n-grams (whitespace removed) for
CJK text (``shingle='auto'`` picks per document by CJK share). ``shingles()`` returns the same
shingles as strings, for tests and for the datasketch baseline in bench/dmu_dedup.py.

Hashing: a unit (character, or word via a polynomial prefix hash over the concatenated batch) is a
uint64; an n-gram is a polynomial of its units; splitmix64 mixes it into x. Permutation i maps x to
((a_i * x) mod 2^64) >> 32 with a random odd a_i (Dietzfelbinger's multiply-shift, universal), and
the signature is the per-document minimum. One multiply per (shingle, permutation) cell is the
whole inner loop; the shift commutes with the minimum, so it runs on the minima only. Band keys hash each band's rows with its band
number, so one sorted uint64 array can index all bands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from dmu_service.pipeline.config import DedupConfig

_WORD = re.compile(r"\w+", re.UNICODE)
_SPACE = re.compile(r"\s+")
U64 = np.uint64
_BASE = 0x100000001B3  # odd, so invertible mod 2^64 (the prefix-hash trick below needs its inverse)
_BASE_INV = pow(_BASE, -1, 1 << 64)
_NGRAM_MULTIPLIERS = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93,
                               0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 0x94D049BB133111EB, 0xBF58476D1CE4E5B9,
                               0x2545F4914F6CDD1D, 0x5851F42D4C957F2D, 0x14057B7EF767814F, 0x27BB2EE687B0B0FD],
                              dtype=U64)
MAX_HASH = np.uint32(0xFFFFFFFF)
# Work on at most this many (shingle, permutation) cells at once: bounds memory at ~8 bytes x this.
CELLS_PER_CHUNK = 1 << 19


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer (in place on a copy): spreads every input bit over the output."""
    x = x.copy()
    x ^= x >> U64(30)
    x *= U64(0xBF58476D1CE4E5B9)
    x ^= x >> U64(27)
    x *= U64(0x94D049BB133111EB)
    x ^= x >> U64(31)
    return x


def _is_cjk_heavy(text: str) -> bool:
    sample = text[:2000]
    if sample.isascii():
        return False
    visible = len(sample) - sum(map(sample.count, (" ", "\n", "\t")))
    cps = np.frombuffer(sample.encode("utf-32-le"), dtype="<u4")
    cjk = np.count_nonzero(cps - np.uint32(0x3400) <= np.uint32(0x9FFF - 0x3400))  # U+3400..U+9FFF, one compare
    return cjk > 0.3 * max(visible, 1)


def shingle_kind(text: str, mode: str) -> str:
    return mode if mode != "auto" else ("char" if _is_cjk_heavy(text) else "word")


def units(text: str, kind: str) -> list[str] | str:
    """Words (a list) or characters (a string, whitespace removed) of the lowercased text."""
    lowered = text.lower()
    return _WORD.findall(lowered) if kind == "word" else _SPACE.sub("", lowered)


def shingles(text: str, *, ngram: int, mode: str = "auto") -> set[str]:
    """The shingle strings of one document (reference implementation; the hashed path matches it)."""
    kind = shingle_kind(text, mode)
    parts = units(text, kind)
    sep = " " if kind == "word" else ""
    return {sep.join(parts[i : i + ngram]) for i in range(len(parts) - ngram + 1)}


def _unit_hashes(docs_units: list, kind: str) -> np.ndarray:
    """One uint64 per unit of the concatenated batch."""
    if kind == "char":
        joined = "".join(docs_units)
        return np.frombuffer(joined.encode("utf-32-le"), dtype="<u4").astype(U64)
    # Words: polynomial hash of each word from prefix sums over the whole batch's characters.
    words = [w for u in docs_units for w in u]
    if not words:
        return np.zeros(0, dtype=U64)
    joined = "".join(words)
    cps = np.frombuffer(joined.encode("utf-32-le"), dtype="<u4").astype(U64)
    word_lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
    ends = np.cumsum(word_lengths)
    starts = ends - word_lengths
    n = cps.size
    inv_powers = np.empty(n, dtype=U64)
    inv_powers[0] = 1
    inv_powers[1:] = U64(_BASE_INV)
    np.cumprod(inv_powers, out=inv_powers)
    powers = np.empty(n + 1, dtype=U64)
    powers[0] = 1
    powers[1:] = U64(_BASE)
    np.cumprod(powers, out=powers)
    prefix = np.zeros(n + 1, dtype=U64)
    np.cumsum(cps * inv_powers, out=prefix[1:])
    # sum_{j in [s, e)} c_j * BASE^(e-1-j) = (prefix[e] - prefix[s]) * BASE^(e-1)
    return (prefix[ends] - prefix[starts]) * powers[ends - 1]


@dataclass
class Signatures:
    values: np.ndarray  # [n_docs, num_perm] uint32; MAX_HASH rows for documents without shingles
    has_shingles: np.ndarray  # [n_docs] bool


class MinHasher:
    def __init__(self, cfg: DedupConfig):
        self.cfg = cfg
        rng = np.random.default_rng(cfg.seed)
        self.a = rng.integers(0, 1 << 63, size=cfg.num_perm, dtype=np.uint64) * U64(2) + U64(1)
        self.band_salt = _mix64(np.arange(1, cfg.bands + 1, dtype=U64) * U64(0x9E3779B97F4A7C15))
        self.row_multipliers = _mix64(np.arange(1, cfg.rows + 1, dtype=U64) * U64(0xC2B2AE3D27D4EB4F)) | U64(1)

    def shingle_hashes(self, docs_units: list, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """(hashes of all shingles, count per document); a document shorter than n has none."""
        n = self.cfg.ngram
        lengths = np.fromiter(map(len, docs_units), dtype=np.int64, count=len(docs_units))
        unit_hash = _unit_hashes(docs_units, kind)
        counts = np.maximum(lengths - n + 1, 0)
        if unit_hash.size < n or counts.sum() == 0:
            return np.zeros(0, dtype=U64), counts
        gram = np.zeros(unit_hash.size - n + 1, dtype=U64)
        for k in range(n):
            gram += unit_hash[k : k + gram.size] * _NGRAM_MULTIPLIERS[k % len(_NGRAM_MULTIPLIERS)]
        # Keep n-grams that start and end inside one document.
        doc_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        valid_starts = np.repeat(doc_starts, counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
        return _mix64(gram[valid_starts]), counts

    def signatures(self, texts: list[str]) -> Signatures:
        out = np.full((len(texts), self.cfg.num_perm), MAX_HASH, dtype=np.uint32)
        kinds = [shingle_kind(t, self.cfg.shingle) for t in texts]
        for kind in ("word", "char"):
            members = [i for i, k in enumerate(kinds) if k == kind]
            if not members:
                continue
            hashes, counts = self.shingle_hashes([units(texts[i], kind) for i in members], kind)
            self._minimum_per_doc(hashes, counts, out, np.array(members))
        return Signatures(out, out[:, 0] != MAX_HASH if len(texts) else np.zeros(0, bool))

    def _minimum_per_doc(self, hashes: np.ndarray, counts: np.ndarray, out: np.ndarray, rows: np.ndarray) -> None:
        # Permutation-major [num_perm, shingles] blocks: the per-document minimum runs along contiguous rows.
        x = hashes.reshape(1, -1)
        a = self.a.reshape(-1, 1)
        ends = np.cumsum(counts)
        doc = 0
        max_shingles = max(CELLS_PER_CHUNK // self.cfg.num_perm, 1)
        while doc < len(counts):
            # A chunk of whole documents (a single huge document is processed alone).
            first = doc
            start = ends[doc] - counts[doc]
            while doc < len(counts) and (ends[doc] - start <= max_shingles or doc == first):
                doc += 1
            chunk_counts = counts[first:doc]
            block = x[:, start : ends[doc - 1]] * a
            nonempty = chunk_counts > 0
            if nonempty.any():
                offsets = (np.cumsum(chunk_counts) - chunk_counts)[nonempty]
                # ">> 32" is monotonic, so it commutes with the minimum: shift the few minima, not every cell.
                out[rows[first:doc][nonempty]] = (np.minimum.reduceat(block, offsets, axis=1) >> U64(32)).T

    def band_keys(self, signatures: np.ndarray) -> np.ndarray:
        """[n_docs, bands] uint64 keys; equal key = equal band (same band number, same rows)."""
        banded = signatures.astype(U64).reshape(len(signatures), self.cfg.bands, self.cfg.rows)
        combined = (banded * self.row_multipliers).sum(axis=2, dtype=U64) + self.band_salt
        return _mix64(combined)
