"""Ingestion runs end to end: counts per stage, shards the trainer can read, cross-run dedup, crash + resume/discard."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest
import zstandard

from dmu_service.db import make_engine, make_session_factory
from dmu_service.migrations import upgrade
from dmu_service.models import Run, Source
from dmu_service.pipeline.outputs import tokenizer_id
from dmu_service.pipeline.runner import RunError, discard_run, execute_run, start_run
from heurimentor.contracts.shards import TokenizedSource, source_folder
from tests.dmu.testlib import live_server, make_doc, settings_for


def _corpus(path: Path, language: str, seeds: range, *, extra: list[bytes] = ()) -> Path:
    with open(path, "wb") as f:
        for seed in seeds:
            f.write(json.dumps({"text": make_doc(language, seed)}, ensure_ascii=False).encode() + b"\n")
        for line in extra:
            f.write(line + b"\n")
    return path


class Env:
    def __init__(self, url: str, data_dir: Path):
        upgrade(url)
        self.data_dir = data_dir
        self.sessions = make_session_factory(make_engine(url))

    def source(self, name: str, language: str, pipeline: dict | None = None) -> None:
        with self.sessions() as s:
            s.add(Source(name=name, language=language, pipeline=pipeline or {}))
            s.commit()

    def start(self, source: str, inputs, tokenizer: Path | None) -> int:
        with self.sessions() as s:
            found = s.query(Source).filter_by(name=source).one()
            return start_run(session=s, source=found, inputs=inputs, tokenizer_path=str(tokenizer) if tokenizer else None).id

    def ingest(self, source: str, inputs, tokenizer: Path | None, **kw) -> Run:
        return execute_run(session_factory=self.sessions, data_dir=self.data_dir, run_id=self.start(source, inputs, tokenizer), **kw)

    def run(self, run_id: int) -> Run:
        with self.sessions() as s:
            return s.get(Run, run_id)


def kept_texts(data_dir: Path, source: str) -> list[str]:
    texts = []
    for part in sorted((data_dir / "kept" / source).glob("*.jsonl.zst")):
        with zstandard.ZstdDecompressor().stream_reader(open(part, "rb")) as reader:
            texts += [json.loads(line)["text"] for line in reader.read().decode().splitlines()]
    return texts


def shard_digests(data_dir: Path) -> dict[str, str]:
    return {
        str(p.relative_to(data_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(data_dir.glob("shards/**/*"))
        if p.is_file()
    }


@pytest.fixture
def env(tmp_path) -> Env:
    return Env(f"sqlite:///{tmp_path / 'dmu.sqlite3'}", tmp_path / "data")


def test_counts_and_shards_on_postgres(postgres_url: str, tmp_path: Path, tokenizer_path: Path) -> None:
    env = Env(postgres_url, tmp_path / "data")
    env.source("web-en", "en")
    bad = [
        b"{broken",
        b'{"text": "caf\xe9 latin-1"}',
        b'{"text": ""}',
        json.dumps({"text": "x" * 2_000_000}).encode(),
        json.dumps({"text": make_doc("zh", 1)}, ensure_ascii=False).encode(),
        b'{"text": "Too short to keep."}',
    ]
    src = _corpus(tmp_path / "en.jsonl", "en", range(40), extra=bad)
    dup = _corpus(tmp_path / "en-dup.jsonl.zst.src", "en", range(30, 45))
    (tmp_path / "en-dup.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(dup.read_bytes()))
    run = env.ingest("web-en", [src, tmp_path / "en-dup.jsonl.zst"], tokenizer_path)
    c = run.counts
    assert run.status == "completed"
    assert (c["read"], c["malformed"], c["undecodable"], c["empty"], c["too_long"], c["language"]) == (61, 1, 1, 1, 1, 1)
    assert c["filtered"] == {"gopher_min_words": 1}
    assert c["languages_dropped"] == {"zh": 1} and c["languages"] == {"en": 45}
    assert (c["exact_dup"], c["kept"]) == (10, 45)
    folder = source_folder(tmp_path / "data", tokenizer_id(tokenizer_path), "web-en")
    source = TokenizedSource(folder, verify_checksums=True)
    assert source.n_docs == 45 and source.n_tokens == c["tokens"] > 0
    assert source.manifest.tokenizer_id == tokenizer_id(tokenizer_path)
    from tokenizers import Tokenizer

    decoded = Tokenizer.from_file(str(tokenizer_path)).decode(source.shards[0].document(0).tolist())
    assert decoded == kept_texts(tmp_path / "data", "web-en")[0]
    with live_server(settings_for(postgres_url, tmp_path / "data"), migrate=False) as url:
        listed = httpx.get(f"{url}/runs", params={"source": "web-en"}).json()
        assert [(r["id"], r["status"], r["counts"]["kept"]) for r in listed] == [(run.id, "completed", 45)]
        metrics = httpx.get(f"{url}/metrics").text
        assert 'heurimentor_dmu_documents{source="web-en",stage="kept"} 45.0' in metrics
        assert 'heurimentor_dmu_filtered_documents{rule="gopher_min_words",source="web-en"} 1.0' in metrics
        assert f'heurimentor_dmu_tokens{{source="web-en"}} {float(c["tokens"])}' in metrics
        assert 'heurimentor_dmu_runs{status="completed"} 1.0' in metrics
        assert httpx.get(f"{url}/runs/{run.id}").json()["progress"] == {"files_total": 2, "files_done": 2, "records_into_current_file": 0}


def test_new_runs_dedup_against_everything_kept_across_sources(env: Env, tmp_path: Path, tokenizer_path: Path) -> None:
    env.source("web-en", "en")
    env.source("books-en", "en")
    env.source("web-zh", "zh")
    first = env.ingest("web-en", [_corpus(tmp_path / "a.jsonl", "en", range(20))], tokenizer_path)
    assert first.counts["kept"] == 20
    edited = tmp_path / "b.jsonl"
    with open(edited, "w") as f:
        for seed in range(10):  # near copies of kept documents
            f.write(json.dumps({"text": make_doc("en", seed) + "\n\nThis copy adds a closing sentence of its own."}) + "\n")
        for seed in range(10, 15):  # exact copies
            f.write(json.dumps({"text": make_doc("en", seed)}) + "\n")
        for seed in range(100, 105):  # new
            f.write(json.dumps({"text": make_doc("en", seed)}) + "\n")
    second = env.ingest("books-en", [edited], tokenizer_path)
    assert (second.counts["near_dup"], second.counts["exact_dup"], second.counts["kept"]) == (10, 5, 5)
    zh = env.ingest("web-zh", [_corpus(tmp_path / "zh.jsonl", "zh", list(range(10)) + list(range(5)))], tokenizer_path)
    assert (zh.counts["kept"], zh.counts["exact_dup"], zh.counts["languages"]) == (10, 5, {"zh": 10})
    assert len(kept_texts(env.data_dir, "books-en")) == 5


class Crash(RuntimeError):
    pass


def _crash_after(batches: int):
    seen = {"n": 0}

    def on_progress(counts, file_index, n_files):
        seen["n"] += 1
        if seen["n"] == batches:
            raise Crash("simulated crash")

    return on_progress


SMALL_STEPS = {"batch_docs": 8, "tokenize": {"commit_every_docs": 16}}


def test_crashed_run_resumes_to_the_same_kept_set(tmp_path: Path, tokenizer_path: Path) -> None:
    inputs = [_corpus(tmp_path / "a.jsonl", "en", list(range(30)) + list(range(5))), _corpus(tmp_path / "b.jsonl", "en", range(25, 60))]
    reference = Env(f"sqlite:///{tmp_path / 'ref.db'}", tmp_path / "ref")
    reference.source("web-en", "en", SMALL_STEPS)
    expected = reference.ingest("web-en", inputs, tokenizer_path)

    env = Env(f"sqlite:///{tmp_path / 'crash.db'}", tmp_path / "crash")
    env.source("web-en", "en", SMALL_STEPS)
    run_id = env.start("web-en", inputs, tokenizer_path)
    with pytest.raises(Crash):
        execute_run(session_factory=env.sessions, data_dir=env.data_dir, run_id=run_id, on_progress=_crash_after(7))
    crashed = env.run(run_id)
    assert crashed.status == "running" and "simulated crash" in crashed.error
    assert 0 < crashed.counts["read"] < expected.counts["read"]
    # A partial step written after the last checkpoint would be found and removed on resume.
    (env.data_dir / "kept" / "web-en" / f"run-{run_id:06d}-{crashed.checkpoint['step']:05d}.jsonl.zst").write_bytes(b"junk")
    with pytest.raises(RunError, match="unfinished"):
        env.start("web-en", inputs, tokenizer_path)
    resumed = execute_run(session_factory=env.sessions, data_dir=env.data_dir, run_id=run_id)
    assert resumed.status == "completed"
    assert resumed.counts == expected.counts
    assert kept_texts(env.data_dir, "web-en") == kept_texts(reference.data_dir, "web-en")
    assert shard_digests(env.data_dir) == shard_digests(reference.data_dir)


def test_crashed_run_discarded_leaves_kept_set_of_completed_runs(env: Env, tmp_path: Path, tokenizer_path: Path) -> None:
    env.source("web-en", "en", SMALL_STEPS)
    env.ingest("web-en", [_corpus(tmp_path / "a.jsonl", "en", range(10))], tokenizer_path)
    before_shards = shard_digests(env.data_dir)
    before_kept = kept_texts(env.data_dir, "web-en")
    run_id = env.start("web-en", [_corpus(tmp_path / "b.jsonl", "en", range(10, 50))], tokenizer_path)
    with pytest.raises(Crash):
        execute_run(session_factory=env.sessions, data_dir=env.data_dir, run_id=run_id, on_progress=_crash_after(4))
    assert kept_texts(env.data_dir, "web-en") != before_kept  # the crashed run had checkpointed parts
    with env.sessions() as s:
        discard_run(session=s, data_dir=env.data_dir, run_id=run_id)
    assert env.run(run_id).status == "discarded"
    assert kept_texts(env.data_dir, "web-en") == before_kept
    assert shard_digests(env.data_dir) == before_shards
    assert not (env.data_dir / "index" / f"run-{run_id:06d}").exists()
    with env.sessions() as s, pytest.raises(RunError, match="only an unfinished run"):
        discard_run(session=s, data_dir=env.data_dir, run_id=run_id)
    # The discarded documents were never indexed: a new run keeps them.
    again = env.ingest("web-en", [tmp_path / "b.jsonl"], tokenizer_path)
    assert again.counts["kept"] == 40
    assert TokenizedSource(next((env.data_dir / "shards").iterdir()) / "web-en").n_docs == 50


def test_run_without_tokenizer_and_bad_inputs(env: Env, tmp_path: Path) -> None:
    env.source("web-en", "en")
    run = env.ingest("web-en", [_corpus(tmp_path / "a.jsonl", "en", range(5))], None)
    assert run.counts["kept"] == 5 and run.counts["tokens"] == 0
    assert not (env.data_dir / "shards").exists() or not any((env.data_dir / "shards").iterdir())
    with pytest.raises(RunError, match="no such file"):
        env.start("web-en", [tmp_path / "missing.jsonl"], None)
    with pytest.raises(RunError, match="tokenizer"):
        env.start("web-en", [tmp_path / "a.jsonl"], tmp_path / "no-tokenizer.json")
