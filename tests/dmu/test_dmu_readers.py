"""Readers: formats, compression, bad input counted (never fatal), bounded memory, resume offsets."""

from __future__ import annotations

import gzip
import json
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from dmu_service.pipeline.readers import read_records, resolve_inputs


def _records(path, **kw):
    kw = {"text_field": "text", "text_split": "paragraph", "max_doc_bytes": 1000, **kw}
    return list(read_records(path, **kw))


def _jsonl_bytes() -> bytes:
    return b"".join(
        [
            json.dumps({"text": "first"}).encode() + b"\n",
            b"{not json\n",
            b"\n",
            b'{"text": "caf\xe9"}\n',  # latin-1 byte: not UTF-8
            json.dumps({"text": "x" * 5000}).encode() + b"\n",
            json.dumps({"body": "no text field"}).encode() + b"\n",
            json.dumps({"text": 42}).encode() + b"\n",
            json.dumps(["a list"]).encode() + b"\n",
            json.dumps({"text": "last \u4e2d\u6587"}, ensure_ascii=False).encode(),  # no trailing newline
        ]
    )


@pytest.mark.parametrize("suffix", ["", ".gz", ".zst"])
def test_jsonl_bad_lines_are_classified(tmp_path, suffix) -> None:
    data = _jsonl_bytes()
    path = tmp_path / f"in.jsonl{suffix}"
    if suffix == ".gz":
        data = gzip.compress(data)
    elif suffix == ".zst":
        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)
    got = [(r.index, r.text, r.problem) for r in _records(path)]
    assert got == [
        (0, "first", None),
        (1, None, "malformed"),
        (2, "", None),
        (3, None, "undecodable"),
        (4, None, "too_long"),
        (5, None, "malformed"),
        (6, None, "malformed"),
        (7, None, "malformed"),
        (8, "last 中文", None),
    ]
    resumed = [(r.index, r.text) for r in _records(path, start=8)]
    assert resumed == [(8, "last 中文")]


def test_text_paragraphs_and_whole_files(tmp_path) -> None:
    path = tmp_path / "book.txt"
    path.write_bytes(b"one\ntwo\n\n\nthree\n\n" + b"y" * 3000 + b"\n\nfour\xff\n\nfive")
    assert [(r.index, r.text, r.problem) for r in _records(path)] == [
        (0, "one\ntwo\n", None),
        (1, "three\n", None),
        (2, None, "too_long"),
        (3, None, "undecodable"),
        (4, "five", None),
    ]
    assert [r.index for r in _records(path, start=3)] == [3, 4]
    assert [r.problem for r in _records(path, text_split="file", max_doc_bytes=10_000)] == ["undecodable"]
    clean = tmp_path / "clean.txt"
    clean.write_text("one\n\ntwo")
    assert [(r.index, r.text) for r in _records(clean, text_split="file")] == [(0, "one\n\ntwo")]
    assert _records(path, text_split="file", max_doc_bytes=100)[0].problem == "too_long"


def test_parquet_rows_resume_by_row_group(tmp_path) -> None:
    path = tmp_path / "rows.parquet"
    table = pa.table({"text": [f"doc {i}" for i in range(10)] + [None, "z" * 2000], "id": list(range(12))})
    pq.write_table(table, path, row_group_size=4)
    records = _records(path)
    assert [r.text for r in records[:10]] == [f"doc {i}" for i in range(10)]
    assert [r.problem for r in records[10:]] == ["malformed", "too_long"]
    assert [r.index for r in _records(path, start=6)] == list(range(6, 12))
    assert {r.problem for r in _records(path, text_field="missing")} == {"malformed"}


def test_gigantic_line_is_drained_in_bounded_memory(tmp_path) -> None:
    path = tmp_path / "huge.jsonl"
    with open(path, "wb") as f:
        f.write(b'{"text": "small"}\n')
        f.write(b'{"text": "' + b"a" * (64 << 20) + b'"}\n')  # one 64 MiB document
        f.write(b'{"text": "after"}\n')
    tracemalloc.start()
    records = _records(path, max_doc_bytes=1 << 20)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [(r.text, r.problem) for r in records] == [("small", None), (None, "too_long"), ("after", None)]
    assert peak < 8 << 20, f"reading a 64 MiB line peaked at {peak} bytes"


def test_resolve_inputs_folders_and_errors(tmp_path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "2.jsonl.zst").write_bytes(b"")
    (tmp_path / "a" / "1.txt").write_text("x")
    (tmp_path / "a" / "notes.csv").write_text("x")
    assert [p.name for p in resolve_inputs([tmp_path / "a"])] == ["1.txt", "2.jsonl.zst"]
    with pytest.raises(ValueError, match="no such file"):
        resolve_inputs([tmp_path / "missing"])
    with pytest.raises(ValueError, match="unknown input format"):
        resolve_inputs([tmp_path / "a" / "notes.csv"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no"):
        resolve_inputs([tmp_path / "empty"])
