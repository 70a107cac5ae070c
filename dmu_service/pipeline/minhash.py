"""Vectorized MinHash + LSH band keys for whole batches of documents (numpy, no per-shingle Python).

Shingles (``shingle='auto'``) are script-aware within one document: its units are the lowercased
words of alphabetic scripts and the single characters of CJK scripts (ideographs, kana, hangul),
in text order, and a shingle is n consecutive units. A Chinese page that is mostly commands thus
gets character shingles for its Chinese and word shingles for its commands, the same on both
sides of a duplicate pair (choosing one kind per document by its CJK share gave the two sides of
a pair different kinds, and Jaccard 0). ``'word'`` / ``'char'`` force one kind. ``shingles()``
returns the same shingles as strings, for tests and for the datasketch baseline in
bench/dmu_dedup.py.

Hashing: a unit (character, or word as a polynomial of its codepoints) is a uint64; an n-gram is a
polynomial of its units; splitmix64 mixes it into x (for ``'auto'`` one pass of the compiled
kernel, ``_kernels.script_shingles``, per batch). Permutation i maps x to
((a_i * x) mod 2^64) >> 32 with a random odd a_i (Dietzfelbinger's multiply-shift, universal), and
the signature is the per-document minimum (``_kernels.minhash_signatures``: the high half of the
product in 32-bit lanes, eight permutations an AVX2 instruction). Band keys hash each band's rows with its band
number, so one sorted uint64 array can index all bands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from dmu_service.pipeline import _kernels
from dmu_service.pipeline.config import DedupConfig

_WORD = re.compile(r"\w+", re.UNICODE)
_CJK_CLASS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
# One unit per CJK character, one per run of other word characters.
_SCRIPT_UNIT = re.compile(f"[{_CJK_CLASS}]|[^\\W{_CJK_CLASS}]+")
_SPACE = re.compile(r"\s+")
U64 = np.uint64
_BASE = 0x100000001B3  # odd, so invertible mod 2^64 (the prefix-hash trick below needs its inverse)
_BASE_INV = pow(_BASE, -1, 1 << 64)
NGRAM_MULTIPLIERS = np.array(
    [
        0x9E3779B97F4A7C15,
        0xC2B2AE3D27D4EB4F,
        0x165667B19E3779F9,
        0xD6E8FEB86659FD93,
        0xFF51AFD7ED558CCD,
        0xC4CEB9FE1A85EC53,
        0x94D049BB133111EB,
        0xBF58476D1CE4E5B9,
        0x2545F4914F6CDD1D,
        0x5851F42D4C957F2D,
        0x14057B7EF767814F,
        0x27BB2EE687B0B0FD,
    ],
    dtype=U64,
)
MAX_HASH = np.uint32(0xFFFFFFFF)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer (in place on a copy): spreads every input bit over the output."""
    x = x.copy()
    x ^= x >> U64(30)
    x *= U64(0xBF58476D1CE4E5B9)
    x ^= x >> U64(27)
    x *= U64(0x94D049BB133111EB)
    x ^= x >> U64(31)
    return x


def units(text: str, kind: str) -> list[str] | str:
    """Script-aware units (``auto``), words (a list), or characters (a string, whitespace removed)."""
    lowered = text.lower()
    if kind == "auto":
        return _SCRIPT_UNIT.findall(lowered)
    return _WORD.findall(lowered) if kind == "word" else _SPACE.sub("", lowered)


def shingles(text: str, *, ngram: int, mode: str = "auto") -> set[str]:
    """The shingle strings of one document (reference implementation; the hashed path matches it)."""
    parts = units(text, mode)
    sep = "" if mode == "char" else " "
    return {sep.join(parts[i : i + ngram]) for i in range(len(parts) - ngram + 1)}


_POWERS: list[np.ndarray] = []


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """BASE^i and BASE^-i (mod 2^64) for i < n, cached and grown by doubling (batches are alike)."""
    if not _POWERS or _POWERS[0].size < n:
        size = max(n, 2 * _POWERS[0].size if _POWERS else 1 << 16)
        powers = np.full(size, U64(_BASE), dtype=U64)
        powers[0] = 1
        np.cumprod(powers, out=powers)
        inv_powers = np.full(size, U64(_BASE_INV), dtype=U64)
        inv_powers[0] = 1
        np.cumprod(inv_powers, out=inv_powers)
        _POWERS[:] = [powers, inv_powers]
    return _POWERS[0], _POWERS[1]


def _range_hashes(cps: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Polynomial hash of each codepoint range [start, end), from prefix sums over ``cps`` (uint64)."""
    n = cps.size
    if n == 0 or starts.size == 0:
        return np.zeros(starts.size, dtype=U64)
    powers, inv_powers = _powers(n + 1)
    prefix = np.zeros(n + 1, dtype=U64)
    np.cumsum(cps * inv_powers[:n], out=prefix[1:])
    # sum_{j in [s, e)} c_j * BASE^(e-1-j) = (prefix[e] - prefix[s]) * BASE^(e-1)
    return (prefix[ends] - prefix[starts]) * powers[ends - 1]


@lru_cache(maxsize=1)
def _bmp_classes() -> np.ndarray:
    """Per BMP codepoint: 0 separator, 1 word character (``\\w``), 2 CJK character (a unit of its own)."""
    classes = np.zeros(0x10000, dtype=np.uint8)
    chars = "".join(map(chr, range(0x10000))).encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    word = re.compile(r"\w")
    for match in word.finditer(chars):
        classes[match.start()] = 1
    for match in re.finditer(f"[{_CJK_CLASS}]", chars):
        classes[match.start()] = 2
    return classes


def script_shingle_hashes(texts: list[str], ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """(hashes of the shingles of ``ngram`` script-aware units of every text, in order; shingles per text).

    The same units as ``units(text, 'auto')``: every CJK character, every run of other word
    characters (codepoints above the BMP count as word characters); one pass of the compiled kernel."""
    lowered = [text.lower() for text in texts]  # per document: a lowercase can be longer ("İ" is two)
    cps = np.frombuffer("\x00".join(lowered).encode("utf-32-le"), dtype="<u4")
    bounds = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum([len(t) + 1 for t in lowered], out=bounds[1:])
    scratch, hashes = np.empty(cps.size, dtype=U64), np.empty(cps.size, dtype=U64)
    counts = np.empty(len(texts), dtype=np.int64)
    total = _kernels.script_shingles(cps, bounds, _bmp_classes(), _BASE, NGRAM_MULTIPLIERS, ngram, scratch, hashes, counts)
    return hashes[:total].copy(), counts


def _unit_hashes(docs_units: list, kind: str) -> np.ndarray:
    """One uint64 per unit of the concatenated batch (``word`` / ``char`` modes)."""
    if kind == "char":  # a string per document
        joined = "".join(docs_units)
        return np.frombuffer(joined.encode("utf-32-le"), dtype="<u4").astype(U64)
    words = [w for u in docs_units for w in u]
    if not words:
        return np.zeros(0, dtype=U64)
    cps = np.frombuffer("".join(words).encode("utf-32-le"), dtype="<u4").astype(U64)
    word_lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
    ends = np.cumsum(word_lengths)
    return _range_hashes(cps, ends - word_lengths, ends)


@dataclass
class Signatures:
    values: np.ndarray  # [n_docs, num_perm] uint32; MAX_HASH rows for documents without shingles
    has_shingles: np.ndarray  # [n_docs] bool


class MinHasher:
    def __init__(self, cfg: DedupConfig):
        self.cfg = cfg
        rng = np.random.default_rng(cfg.seed)
        self.a = rng.integers(0, 1 << 63, size=cfg.num_perm, dtype=np.uint64) * U64(2) + U64(1)
        # The kernel's halves of each multiplier (it computes the high half of a * x mod 2^64 in 32-bit lanes).
        self.a_lo, self.a_hi = (self.a & U64(0xFFFFFFFF)).astype(np.uint32), (self.a >> U64(32)).astype(np.uint32)
        self.band_salt = _mix64(np.arange(1, cfg.bands + 1, dtype=U64) * U64(0x9E3779B97F4A7C15))
        self.row_multipliers = _mix64(np.arange(1, cfg.rows + 1, dtype=U64) * U64(0xC2B2AE3D27D4EB4F)) | U64(1)

    def shingle_hashes(self, texts: list[str], kind: str) -> tuple[np.ndarray, np.ndarray]:
        """(hashes of all shingles, count per document); a document shorter than n has none."""
        n = self.cfg.ngram
        if kind == "auto":
            return script_shingle_hashes(texts, n)
        docs_units = [units(t, kind) for t in texts]
        lengths = np.fromiter(map(len, docs_units), dtype=np.int64, count=len(docs_units))
        unit_hash = _unit_hashes(docs_units, kind)
        counts = np.maximum(lengths - n + 1, 0)
        if unit_hash.size < n or counts.sum() == 0:
            return np.zeros(0, dtype=U64), counts
        gram = np.zeros(unit_hash.size - n + 1, dtype=U64)
        for k in range(n):
            gram += unit_hash[k : k + gram.size] * NGRAM_MULTIPLIERS[k % len(NGRAM_MULTIPLIERS)]
        # Keep n-grams that start and end inside one document.
        doc_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        valid_starts = np.repeat(doc_starts, counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
        return _mix64(gram[valid_starts]), counts

    def signatures(self, texts: list[str]) -> Signatures:
        out = np.full((len(texts), self.cfg.num_perm), MAX_HASH, dtype=np.uint32)
        kind = self.cfg.shingle
        if texts:
            hashes, counts = self.shingle_hashes(texts, kind)
            _kernels.minhash_signatures(hashes, counts.astype(np.int64, copy=False), self.a_lo, self.a_hi, out)
        return Signatures(out, out[:, 0] != MAX_HASH if len(texts) else np.zeros(0, bool))

    def band_keys(self, signatures: np.ndarray) -> np.ndarray:
        """[n_docs, bands] uint64 keys; equal key = equal band (same band number, same rows)."""
        banded = signatures.astype(U64).reshape(len(signatures), self.cfg.bands, self.cfg.rows)
        combined = (banded * self.row_multipliers).sum(axis=2, dtype=U64) + self.band_salt
        return _mix64(combined)
