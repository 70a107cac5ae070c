"""Tokenized shard format: the contract between the DMU (writer) and the trainer (reader).

A tokenized source is a folder holding ``manifest.json`` and one or more shard files.
Each shard file is memory-mappable and self-describing:

    offset 0   header, 64 bytes, little-endian:
               magic    8s   b"HMSHARD\\0"
               version  u32  FORMAT_VERSION
               dtype    u32  1 = uint16, 2 = uint32 (uint32 whenever vocab_size > 65535)
               n_docs   u64
               n_tokens u64
               reserved 32 bytes of zero
    offset 64  tokens   n_tokens x dtype (documents back to back, no separators)
    then       offsets  (n_docs + 1) x u64, token offset where each document starts; the
                        last entry is n_tokens. Aligned to 8 bytes (zero padding before it).

The manifest lists the shards in order with their counts and sha256, the tokenizer id and the
format version; it is written last and atomically, so a folder whose manifest exists is
complete. Files are written to a temporary name, fsynced and renamed: a crash never leaves a
half-written shard under its final name.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from heurimentor.fsutil import atomic_write_bytes

MAGIC = b"HMSHARD\0"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
HEADER = struct.Struct("<8sIIQQ32x")
assert HEADER.size == 64
DTYPE_CODES: dict[int, np.dtype] = {1: np.dtype("<u2"), 2: np.dtype("<u4")}


def source_folder(data_dir: str | os.PathLike, tokenizer_id: str, source: str) -> Path:
    """Where the DMU writes a source's shards for a tokenizer: ``<data_dir>/shards/<tokenizer id>/<source>``."""
    return Path(data_dir) / "shards" / tokenizer_id / source


class ShardFormatError(ValueError):
    """A shard or manifest that does not match this format; the message names file and field."""


def sources_folder(root: str | os.PathLike, tokenizer_id: str | None = None) -> Path:
    """The folder whose subfolders are tokenized sources: ``root`` itself when it holds them, or,
    when ``root`` is a DMU data dir (its volume mounted as it is), ``shards/<tokenizer id>`` in it:
    the one named, else the only one there. Anything else is a ShardFormatError naming what was found."""
    root = Path(root)
    if not root.is_dir():
        raise ShardFormatError(f"data.shard_root {root}: not a folder")
    if tokenizer_id is None and any((p / MANIFEST_NAME).exists() for p in root.iterdir()):
        return root
    shards = root / "shards"
    tokenizers = sorted(p.name for p in shards.iterdir() if p.is_dir()) if shards.is_dir() else []
    if tokenizer_id is not None:
        if tokenizer_id not in tokenizers:
            raise ShardFormatError(f"data.tokenizer_id {tokenizer_id}: no {shards / tokenizer_id} (tokenizers there: {tokenizers})")
        return shards / tokenizer_id
    if len(tokenizers) == 1:
        return shards / tokenizers[0]
    if tokenizers:
        raise ShardFormatError(f"data.shard_root {root}: shards of several tokenizers {tokenizers}; set data.tokenizer_id to one")
    raise ShardFormatError(f"data.shard_root {root}: no tokenized source (no */manifest.json, no shards/<tokenizer id>/)")


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    return DTYPE_CODES[1] if vocab_size <= 65536 else DTYPE_CODES[2]


def _dtype_code(dtype: np.dtype) -> int:
    for code, candidate in DTYPE_CODES.items():
        if candidate == dtype:
            return code
    raise ShardFormatError(f"dtype {dtype} is not a shard dtype (uint16 or uint32)")


def _offsets_position(n_tokens: int, itemsize: int) -> int:
    end_of_tokens = HEADER.size + n_tokens * itemsize
    return (end_of_tokens + 7) // 8 * 8


@dataclass(frozen=True)
class ShardInfo:
    path: str  # relative to the manifest's folder
    documents: int
    tokens: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    source: str
    tokenizer_id: str
    vocab_size: int
    shards: list[ShardInfo]
    format_version: int = FORMAT_VERSION
    documents: int = 0
    tokens: int = 0
    extra: dict = field(default_factory=dict)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Manifest:
        path = Path(folder) / MANIFEST_NAME
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError as e:
            raise ShardFormatError(f"{path}: no manifest (tokenization incomplete or wrong folder)") from e
        except json.JSONDecodeError as e:
            raise ShardFormatError(f"{path}: manifest is not valid JSON: {e}") from e
        version = raw.get("format_version")
        if version != FORMAT_VERSION:
            raise ShardFormatError(f"{path}: field format_version is {version!r}, this reader understands {FORMAT_VERSION}")
        for key in ("source", "tokenizer_id", "vocab_size", "shards"):
            if key not in raw:
                raise ShardFormatError(f"{path}: missing field {key!r}")
        shards = [ShardInfo(**s) for s in raw["shards"]]
        return cls(
            source=raw["source"],
            tokenizer_id=raw["tokenizer_id"],
            vocab_size=int(raw["vocab_size"]),
            shards=shards,
            format_version=version,
            documents=sum(s.documents for s in shards),
            tokens=sum(s.tokens for s in shards),
            extra=raw.get("extra", {}),
        )

    def write(self, folder: str | os.PathLike) -> Path:
        path = Path(folder) / MANIFEST_NAME
        body = asdict(self)
        body["documents"] = sum(s.documents for s in self.shards)
        body["tokens"] = sum(s.tokens for s in self.shards)
        atomic_write_bytes(path, json.dumps(body, indent=2, ensure_ascii=False).encode())
        return path


def write_shard(path: str | os.PathLike, documents: Sequence[Sequence[int]] | Iterable[np.ndarray], vocab_size: int) -> ShardInfo:
    """Write one shard atomically and return its manifest entry (path is the file name)."""
    path = Path(path)
    dtype = dtype_for_vocab(vocab_size)
    arrays = [np.asarray(doc, dtype=np.int64) for doc in documents]
    for i, arr in enumerate(arrays):
        if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
            raise ShardFormatError(f"{path}: document {i} has a token id outside [0, {vocab_size})")
    lengths = np.array([a.size for a in arrays], dtype=np.uint64)
    offsets = np.zeros(len(arrays) + 1, dtype="<u8")
    np.cumsum(lengths, out=offsets[1:])
    n_tokens = int(offsets[-1])
    tokens = np.concatenate(arrays).astype(dtype) if arrays else np.zeros(0, dtype=dtype)
    header = HEADER.pack(MAGIC, FORMAT_VERSION, _dtype_code(dtype), len(arrays), n_tokens)
    pad = _offsets_position(n_tokens, dtype.itemsize) - (HEADER.size + n_tokens * dtype.itemsize)
    data = header + tokens.tobytes() + b"\0" * pad + offsets.tobytes()
    atomic_write_bytes(path, data)
    return ShardInfo(path=path.name, documents=len(arrays), tokens=n_tokens, sha256=hashlib.sha256(data).hexdigest())


class Shard:
    """A memory-mapped shard: ``len(shard)`` documents, ``shard.document(i)`` a token array view."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        size = self.path.stat().st_size
        if size < HEADER.size:
            raise ShardFormatError(f"{self.path}: {size} bytes is shorter than the {HEADER.size}-byte header")
        with open(self.path, "rb") as f:
            magic, version, dtype_code, n_docs, n_tokens = HEADER.unpack(f.read(HEADER.size))
        if magic != MAGIC:
            raise ShardFormatError(f"{self.path}: field magic is {magic!r}, expected {MAGIC!r}")
        if version != FORMAT_VERSION:
            raise ShardFormatError(f"{self.path}: field version is {version}, this reader understands {FORMAT_VERSION}")
        if dtype_code not in DTYPE_CODES:
            raise ShardFormatError(f"{self.path}: field dtype is {dtype_code}, expected one of {sorted(DTYPE_CODES)}")
        self.dtype = DTYPE_CODES[dtype_code]
        offsets_at = _offsets_position(n_tokens, self.dtype.itemsize)
        expected = offsets_at + (n_docs + 1) * 8
        if size != expected:
            raise ShardFormatError(f"{self.path}: size {size} bytes, header (n_docs={n_docs}, n_tokens={n_tokens}) implies {expected}")
        self.n_docs = n_docs
        self.n_tokens = n_tokens
        self.tokens = (
            np.memmap(self.path, dtype=self.dtype, mode="r", offset=HEADER.size, shape=(n_tokens,)) if n_tokens else np.zeros(0, self.dtype)
        )
        self.offsets = np.memmap(self.path, dtype="<u8", mode="r", offset=offsets_at, shape=(n_docs + 1,))

    def __len__(self) -> int:
        return self.n_docs

    def document(self, index: int) -> np.ndarray:
        return self.tokens[int(self.offsets[index]) : int(self.offsets[index + 1])]


class TokenizedSource:
    """All shards of one source, in manifest order, as one flat token stream plus document bounds."""

    def __init__(self, folder: str | os.PathLike, *, verify_checksums: bool = False):
        self.folder = Path(folder)
        self.manifest = Manifest.load(self.folder)
        self.shards: list[Shard] = []
        for info in self.manifest.shards:
            shard_path = self.folder / info.path
            if verify_checksums:
                digest = hashlib.sha256(shard_path.read_bytes()).hexdigest()
                if digest != info.sha256:
                    raise ShardFormatError(f"{shard_path}: sha256 {digest} does not match manifest {info.sha256}")
            shard = Shard(shard_path)
            if (shard.n_docs, shard.n_tokens) != (info.documents, info.tokens):
                raise ShardFormatError(
                    f"{shard_path}: holds {shard.n_docs} documents / {shard.n_tokens} tokens, "
                    f"manifest says {info.documents} / {info.tokens}"
                )
            self.shards.append(shard)
        self.n_tokens = sum(s.n_tokens for s in self.shards)
        self.n_docs = sum(s.n_docs for s in self.shards)
        self._starts = np.cumsum([0] + [s.n_tokens for s in self.shards])

    @property
    def name(self) -> str:
        return self.manifest.source

    def tokens(self, start: int, length: int) -> np.ndarray:
        """``length`` tokens of the concatenated stream from ``start`` (may cross shard bounds)."""
        if start < 0 or start + length > self.n_tokens:
            raise IndexError(f"source {self.name}: tokens [{start}, {start + length}) outside [0, {self.n_tokens})")
        out = np.empty(length, dtype=np.int64)
        filled = 0
        shard_index = int(np.searchsorted(self._starts, start, side="right")) - 1
        while filled < length:
            shard = self.shards[shard_index]
            local = start + filled - int(self._starts[shard_index])
            take = min(length - filled, shard.n_tokens - local)
            out[filled : filled + take] = shard.tokens[local : local + take]
            filled += take
            shard_index += 1
        return out
