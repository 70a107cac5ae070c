"""Run outputs, written per checkpoint step: token shards (heurimentor.contracts.shards format) and kept text.

Names carry the run id and step, so a step written before a crash but never checkpointed can be
found and deleted on resume, and a discarded run's files can be removed without touching others.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import zstandard

from heurimentor.contracts.shards import Manifest, ShardInfo, source_folder, write_shard


def tokenizer_id(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def step_name(run_id: int, step: int) -> str:
    return f"run-{run_id:06d}-{step:05d}"


class RunLayout:
    """Where a run's outputs live under the DMU data dir."""

    def __init__(self, data_dir: Path, source: str, run_id: int, tok_id: str | None):
        self.run_id = run_id
        self.kept_dir = data_dir / "kept" / source
        self.index_dir = data_dir / "index" / f"run-{run_id:06d}"
        self.shard_dir = source_folder(data_dir, tok_id, source) if tok_id else None
        for folder in (self.kept_dir, self.index_dir, self.shard_dir):
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)

    def index_segment(self, step: int) -> Path:
        return self.index_dir / f"seg-{step:05d}.npz"

    def kept_part(self, step: int) -> Path:
        return self.kept_dir / f"{step_name(self.run_id, step)}.jsonl.zst"

    def shard_part(self, step: int) -> Path | None:
        return self.shard_dir / f"{step_name(self.run_id, step)}.bin" if self.shard_dir else None

    def files_from(self, step: int) -> list[Path]:
        """This run's files of steps >= ``step`` (written after the last checkpoint)."""
        found = []
        prefix = f"run-{self.run_id:06d}-"
        for folder in (self.kept_dir, self.shard_dir):
            if folder is not None:
                found += [p for p in folder.glob(prefix + "*") if int(p.name[len(prefix) : len(prefix) + 5]) >= step]
        found += [p for p in self.index_dir.glob("seg-*.npz") if int(p.name[4:9]) >= step]
        return found


def write_kept_part(path: Path, docs: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as raw:
        with zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False) as writer:
            for doc in docs:
                writer.write(json.dumps(doc, ensure_ascii=False).encode() + b"\n")
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(tmp, path)


def write_shard_part(path: Path, token_docs: list[np.ndarray], vocab_size: int) -> dict:
    info = write_shard(path, token_docs, vocab_size)
    return {"path": info.path, "documents": info.documents, "tokens": info.tokens, "sha256": info.sha256}


def write_source_manifest(folder: Path, *, source: str, tok_id: str, vocab_size: int, runs: list[tuple[int, list[dict]]]) -> Path:
    """The source's manifest: shards of the given (completed) runs, in run order."""
    shards = [ShardInfo(**part) for _, parts in sorted(runs) for part in parts]
    manifest = Manifest(
        source=source, tokenizer_id=tok_id, vocab_size=vocab_size, shards=shards, extra={"runs": [run_id for run_id, _ in sorted(runs)]}
    )
    folder.mkdir(parents=True, exist_ok=True)
    return manifest.write(folder)
