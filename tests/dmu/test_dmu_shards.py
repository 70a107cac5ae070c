"""The tokenized shard format (dmu_service/shards.py): round trip, dtypes, and every corruption detected."""

from __future__ import annotations

import numpy as np
import pytest

from heurimentor.contracts.shards import HEADER, Manifest, Shard, ShardFormatError, ShardInfo, TokenizedSource, dtype_for_vocab, write_shard


def _source(tmp_path, docs_per_shard, vocab_size=1000):
    infos = [write_shard(tmp_path / f"part-{i}.bin", docs, vocab_size) for i, docs in enumerate(docs_per_shard)]
    Manifest(source="web-en", tokenizer_id="abcd", vocab_size=vocab_size, shards=infos).write(tmp_path)
    return infos


def test_round_trip_across_shards(tmp_path) -> None:
    docs = [[1, 2, 3], [], [4, 5], [6, 7, 8, 9]]
    _source(tmp_path, [docs[:2], docs[2:]])
    source = TokenizedSource(tmp_path, verify_checksums=True)
    assert (source.n_docs, source.n_tokens, source.name) == (4, 9, "web-en")
    assert source.tokens(0, 9).tolist() == list(range(1, 10))
    assert source.tokens(2, 3).tolist() == [3, 4, 5]  # crosses the shard boundary
    assert [source.shards[0].document(i).tolist() for i in range(2)] == [[1, 2, 3], []]
    assert source.shards[0].dtype == np.dtype("<u2")
    with pytest.raises(IndexError, match="web-en"):
        source.tokens(5, 5)
    manifest = Manifest.load(tmp_path)
    assert (manifest.documents, manifest.tokens) == (4, 9)


def test_large_vocab_uses_uint32_and_rejects_out_of_range(tmp_path) -> None:
    assert dtype_for_vocab(65536) == np.dtype("<u2") and dtype_for_vocab(100_000) == np.dtype("<u4")
    write_shard(tmp_path / "big.bin", [[99_999, 70_000]], 100_000)
    shard = Shard(tmp_path / "big.bin")
    assert shard.dtype == np.dtype("<u4") and shard.document(0).tolist() == [99_999, 70_000]
    with pytest.raises(ShardFormatError, match="outside"):
        write_shard(tmp_path / "bad.bin", [[5, 1000]], 1000)
    assert not (tmp_path / "bad.bin").exists()


def test_corruptions_are_named(tmp_path) -> None:
    infos = _source(tmp_path, [[[1, 2, 3], [4]]])
    path = tmp_path / infos[0].path
    data = path.read_bytes()
    path.write_bytes(data[:-8])
    with pytest.raises(ShardFormatError, match="size"):
        Shard(path)
    path.write_bytes(b"NOTSHARD" + data[8:])
    with pytest.raises(ShardFormatError, match="magic"):
        Shard(path)
    path.write_bytes(data[: HEADER.size] + bytes([data[HEADER.size] ^ 1]) + data[HEADER.size + 1 :])
    with pytest.raises(ShardFormatError, match="sha256"):
        TokenizedSource(tmp_path, verify_checksums=True)
    path.write_bytes(data)
    Manifest(
        source="web-en",
        tokenizer_id="abcd",
        vocab_size=1000,
        shards=[ShardInfo(path=infos[0].path, documents=3, tokens=4, sha256=infos[0].sha256)],
    ).write(tmp_path)
    with pytest.raises(ShardFormatError, match="manifest says"):
        TokenizedSource(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format_version": 2}')
    with pytest.raises(ShardFormatError, match="format_version"):
        Manifest.load(tmp_path)
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(ShardFormatError, match="no manifest"):
        Manifest.load(tmp_path)
    assert not list(tmp_path.glob(".*tmp*"))
