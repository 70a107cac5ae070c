"""Streaming readers for JSONL, Parquet, plain text, man pages and HTML (optionally .gz / .zst), with bounded memory.

Man pages (``ls.1``, ``ls.1.gz``, any section ``.1``-``.9`` with a suffix such as ``.3pm``) and HTML
(``.html``/``.htm``) are one document per file, converted to plain text (``markup.py``).

Each reader yields ``Record``s numbered per file from 0; a run checkpoints (file, record index) and a
resumed reader skips the records before it. A document larger than ``max_doc_bytes`` is never held
in memory whole: the reader drains it in chunks and yields a ``too_long`` record instead.
"""

from __future__ import annotations

import gzip
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import zstandard

from dmu_service.pipeline.markup import html_to_text, roff_to_text

COMPRESSIONS = (".gz", ".zst", ".zstd")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
PARQUET_SUFFIXES = (".parquet",)
TEXT_SUFFIXES = (".txt", ".text", ".md")
HTML_SUFFIXES = (".html", ".htm", ".xhtml")
MAN_PAGE = re.compile(r"\.[1-9][a-z0-9]{0,8}$")  # ls.1, printf.3, Moose.3pm, ssh_config.5
DRAIN_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Record:
    index: int
    text: str | None
    problem: str | None = None  # malformed | undecodable | too_long


def input_format(path: Path) -> str:
    name = path.name.lower()
    for suffix in COMPRESSIONS:
        name = name.removesuffix(suffix)
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(TEXT_SUFFIXES):
        return "text"
    if name.endswith(HTML_SUFFIXES):
        return "html"
    if MAN_PAGE.search(name):
        return "man"
    known = JSONL_SUFFIXES + PARQUET_SUFFIXES + TEXT_SUFFIXES + HTML_SUFFIXES + (".1 … .9 (man pages)",)
    raise ValueError(f"{path}: unknown input format (expected {known}, optionally {COMPRESSIONS})")


def resolve_inputs(paths: list[str | Path]) -> list[Path]:
    """Files, and the supported files under folders (sorted, so a run's order is reproducible)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw).resolve()
        if path.is_dir():
            found = []
            for candidate in sorted(path.rglob("*")):
                if candidate.is_file() and not candidate.name.startswith("."):
                    try:
                        input_format(candidate)
                    except ValueError:
                        continue
                    found.append(candidate)
            if not found:
                raise ValueError(f"{path}: folder holds no JSONL, Parquet, text, HTML or man page files")
            files.extend(found)
        elif path.is_file():
            input_format(path)
            files.append(path)
        else:
            raise ValueError(f"{path}: no such file or folder")
    return files


def open_binary(path: Path) -> io.BufferedIOBase:
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    if name.endswith((".zst", ".zstd")):
        raw = open(path, "rb")
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True), buffer_size=DRAIN_CHUNK)
    return open(path, "rb")


def _bounded_lines(stream: io.BufferedIOBase, limit: int) -> Iterator[bytes | None]:
    """Lines of at most ``limit`` bytes (newline excluded); None for a longer line, drained unread."""
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        if len(line) > limit and not line.endswith(b"\n"):
            while True:
                rest = stream.readline(DRAIN_CHUNK)
                if not rest or rest.endswith(b"\n"):
                    break
            yield None
        else:
            yield line


def read_jsonl(path: Path, *, text_field: str, max_doc_bytes: int, start: int = 0) -> Iterator[Record]:
    with open_binary(path) as stream:
        for index, line in enumerate(_bounded_lines(stream, max_doc_bytes)):
            if index < start:
                continue
            if line is None:
                yield Record(index, None, "too_long")
                continue
            if not line.strip():
                yield Record(index, "")
                continue
            try:
                decoded = line.decode("utf-8")
            except UnicodeDecodeError:
                yield Record(index, None, "undecodable")
                continue
            try:
                obj = json.loads(decoded)
            except json.JSONDecodeError:
                yield Record(index, None, "malformed")
                continue
            text = obj.get(text_field) if isinstance(obj, dict) else None
            yield Record(index, text, None) if isinstance(text, str) else Record(index, None, "malformed")


def read_text(path: Path, *, split: str, max_doc_bytes: int, start: int = 0) -> Iterator[Record]:
    """``split='file'``: the file is one document; ``'paragraph'``: blank-line separated blocks."""
    with open_binary(path) as stream:
        if split == "file":
            if start > 0:
                return
            data = stream.read(max_doc_bytes + 1)
            if len(data) > max_doc_bytes:
                yield Record(0, None, "too_long")
                return
            yield _decoded(0, data)
            return
        index, block, size, too_long = 0, [], 0, False
        for line in _bounded_lines(stream, max_doc_bytes):
            if line is not None and not line.strip():
                if block or too_long:
                    if index >= start:
                        yield Record(index, None, "too_long") if too_long else _decoded(index, b"".join(block))
                    index += 1
                block, size, too_long = [], 0, False
                continue
            if line is None or size + len(line) > max_doc_bytes:
                block, size, too_long = [], 0, True
            elif not too_long:
                block.append(line)
                size += len(line)
        if (block or too_long) and index >= start:
            yield Record(index, None, "too_long") if too_long else _decoded(index, b"".join(block))


def _decoded(index: int, data: bytes) -> Record:
    try:
        return Record(index, data.decode("utf-8"))
    except UnicodeDecodeError:
        return Record(index, None, "undecodable")


def read_parquet(path: Path, *, text_field: str, max_doc_bytes: int, start: int = 0) -> Iterator[Record]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    if text_field not in parquet.schema_arrow.names:
        for index in range(start, parquet.metadata.num_rows):
            yield Record(index, None, "malformed")
        return
    index = 0
    for group in range(parquet.num_row_groups):
        rows = parquet.metadata.row_group(group).num_rows
        if index + rows <= start:  # resume: skip whole row groups without reading them
            index += rows
            continue
        for batch in parquet.iter_batches(batch_size=1024, row_groups=[group], columns=[text_field]):
            for value in batch.column(0).to_pylist():
                if index >= start:
                    if not isinstance(value, str):
                        yield Record(index, None, "malformed")
                    elif len(value) > max_doc_bytes // 4 and len(value.encode("utf-8")) > max_doc_bytes:
                        yield Record(index, None, "too_long")
                    else:
                        yield Record(index, value)
                index += 1


def read_markup(path: Path, *, fmt: str, max_doc_bytes: int, start: int = 0) -> Iterator[Record]:
    """A man page or HTML file as one plain-text document (``max_doc_bytes`` bounds the markup read)."""
    if start > 0:
        return
    with open_binary(path) as stream:
        data = stream.read(max_doc_bytes + 1)
    if len(data) > max_doc_bytes:
        yield Record(0, None, "too_long")
        return
    record = _decoded(0, data)
    if record.text is None and fmt == "man":
        # Old man pages are often Latin-1; roff itself is byte-oriented.
        record = Record(0, data.decode("latin-1"))
    if record.text is not None:
        record = Record(0, roff_to_text(record.text) if fmt == "man" else html_to_text(record.text))
    yield record


def read_records(path: Path, *, text_field: str, text_split: str, max_doc_bytes: int, start: int = 0) -> Iterator[Record]:
    fmt = input_format(path)
    if fmt in ("man", "html"):
        return read_markup(path, fmt=fmt, max_doc_bytes=max_doc_bytes, start=start)
    if fmt == "jsonl":
        return read_jsonl(path, text_field=text_field, max_doc_bytes=max_doc_bytes, start=start)
    if fmt == "parquet":
        return read_parquet(path, text_field=text_field, max_doc_bytes=max_doc_bytes, start=start)
    return read_text(path, split=text_split, max_doc_bytes=max_doc_bytes, start=start)
