"""Ingestion runs: stream files through the stages, dedup against the index, tokenize, checkpoint.

Durability: every checkpoint step writes its shard part, kept-text part and index segment
atomically, then commits (position, counts, parts) to the run's row in one transaction. A crash
leaves at most files of an uncommitted step, which resume deletes before continuing from the
committed position; discard deletes all of the run's files. A run's kept documents reach the
dedup index of later runs and the source's manifest only when it completes, so the kept set is
always the union of completed runs.

Only one run is active at a time (a lock file in the data dir): the dedup index is global.
"""

from __future__ import annotations

import fcntl
import json
import logging
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dmu_service.crud.exclusions import add_exclusions, document_id
from dmu_service.models import Run, RunStatus, Source
from dmu_service.models.base import utcnow
from dmu_service.pipeline.config import PipelineConfig
from dmu_service.pipeline.dedup import DedupDecision, Deduplicator, write_segment
from dmu_service.pipeline.outputs import RunLayout, tokenizer_id, write_kept_part, write_shard_part, write_source_manifest
from dmu_service.pipeline.process import DocumentProcessor, Processed
from dmu_service.pipeline.readers import Record, read_records, resolve_inputs
from heurimentor.contracts.shards import source_folder

log = logging.getLogger(__name__)
# (counts so far, index of the file being read, number of files); called after every batch.
ProgressFn = Callable[[dict, int, int], None]
SAMPLES_PER_RULE = 3
COUNT_KEYS = ("read", "malformed", "undecodable", "too_long", "empty", "language", "exact_dup", "near_dup", "kept", "tokens")


class RunError(RuntimeError):
    pass


@contextmanager
def ingest_lock(data_dir: Path) -> Iterator[None]:
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "ingest.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise RunError(f"another ingestion run holds {data_dir / 'ingest.lock'}; one run at a time") from e
        yield


def chunked(items: Iterable[Record], size: int) -> Iterator[list[Record]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def empty_counts() -> dict:
    return {**{k: 0 for k in COUNT_KEYS}, "filtered": {}, "lines_removed": {}, "languages": {}, "languages_dropped": {}, "samples": {}}


@dataclass
class _Pending:
    """Outputs since the last checkpoint."""

    kept: list[dict] = field(default_factory=list)
    tokens: list[np.ndarray] = field(default_factory=list)
    n_tokens: int = 0
    decisions: list[DedupDecision] = field(default_factory=list)
    exclusions: list[dict] = field(default_factory=list)  # the exclusion log rows of these documents


class Ingestion:
    """Drives one run. ``map_batches`` is the backend: it maps the processor over record batches, in order."""

    def __init__(
        self,
        *,
        session_factory: sessionmaker[Session],
        data_dir: Path,
        run_id: int,
        map_batches: Callable[[DocumentProcessor, Iterator[list[Record]]], Iterator[list[Processed]]] | None = None,
        on_progress: ProgressFn | None = None,
    ):
        self.session_factory = session_factory
        self.data_dir = data_dir
        self.run_id = run_id
        self.map_batches = map_batches or (lambda processor, batches: map(processor.process, batches))
        self.on_progress = on_progress or (lambda counts, file_index, n_files: None)

    def execute(self) -> Run:
        with self.session_factory() as session:
            run = session.get(Run, self.run_id)
            if run is None or run.status != RunStatus.running:
                raise RunError(f"run {self.run_id} is not running (status {run.status if run else 'missing'})")
            cfg = PipelineConfig.model_validate(run.config)
            source = run.source.name
            tok_path, tok_id = run.tokenizer_path, run.tokenizer_id
            inputs = [Path(p) for p in run.inputs]
            checkpoint = dict(run.checkpoint) or {"file_index": 0, "record": 0, "step": 0, "parts": []}
            counts = run.counts or empty_counts()
            completed_index_dirs = self._completed_index_dirs(session)
        layout = RunLayout(self.data_dir, source, self.run_id, tok_id)
        for stale in layout.files_from(checkpoint["step"]):
            log.info("removing output of an uncheckpointed step", extra={"run": self.run_id, "path": str(stale)})
            stale.unlink()
        tokenizer = None
        if tok_path:
            from tokenizers import Tokenizer

            if tokenizer_id(tok_path) != tok_id:
                raise RunError(f"run {self.run_id}: tokenizer {tok_path} changed since the run started (id {tok_id})")
            tokenizer = Tokenizer.from_file(tok_path)
        dedup = Deduplicator(cfg.dedup)
        dedup.load(sorted(p for d in completed_index_dirs for p in d.glob("seg-*.npz")) + sorted(layout.index_dir.glob("seg-*.npz")))
        processor = DocumentProcessor(cfg)
        pending = _Pending()

        def commit(position: tuple[int, int]) -> None:
            step = checkpoint["step"]
            if pending.kept:
                write_kept_part(layout.kept_part(step), pending.kept)
            if tokenizer is not None and pending.tokens:
                checkpoint["parts"].append(write_shard_part(layout.shard_part(step), pending.tokens, tokenizer.get_vocab_size()))
            write_segment(layout.index_segment(step), pending.decisions, num_perm=cfg.dedup.num_perm, bands=cfg.dedup.bands)
            checkpoint.update(file_index=position[0], record=position[1], step=step + 1)
            self._save(checkpoint=checkpoint, counts=counts, exclusions=pending.exclusions)
            pending.__init__()

        for file_index in range(checkpoint["file_index"], len(inputs)):
            path = inputs[file_index]
            start = checkpoint["record"] if file_index == checkpoint["file_index"] else 0
            records = read_records(
                path, text_field=cfg.text_field, text_split=cfg.text_split, max_doc_bytes=cfg.limits.max_doc_bytes, start=start
            )
            batches = chunked(records, cfg.batch_docs)
            docs_since_commit = 0
            for processed in self.map_batches(processor, batches):
                self._consume(processed, path, file_index, source, counts, dedup, tokenizer, pending)
                self.on_progress(counts, file_index, len(inputs))
                docs_since_commit += len(processed)
                if pending.n_tokens >= cfg.tokenize.shard_max_tokens or docs_since_commit >= cfg.tokenize.commit_every_docs:
                    commit((file_index, processed[-1].index + 1))
                    docs_since_commit = 0
            commit((file_index + 1, 0))
        return self._complete(source=source, tok_id=tok_id, tokenizer=tokenizer, layout=layout)

    def _consume(
        self,
        processed: list[Processed],
        path: Path,
        file_index: int,
        source: str,
        counts: dict,
        dedup: Deduplicator,
        tokenizer,
        pending: _Pending,
    ) -> None:
        counts["read"] += len(processed)
        survivors = []
        for item in processed:
            for rule, n in item.line_counts.items():
                counts["lines_removed"][rule] = counts["lines_removed"].get(rule, 0) + n
            if item.outcome == "ok":
                survivors.append(item)
                continue
            self._exclude(pending, counts, file_index, item.index, item.outcome, item.value, None, item.language)
            if item.outcome in COUNT_KEYS:
                counts[item.outcome] += 1
                if item.outcome == "language":
                    dropped = counts.setdefault("languages_dropped", {})
                    dropped[item.language] = dropped.get(item.language, 0) + 1
            else:
                counts["filtered"][item.outcome] = counts["filtered"].get(item.outcome, 0) + 1
        decision = dedup.decide([s.text for s in survivors], [(self.run_id, file_index, s.index) for s in survivors])
        pending.decisions.append(decision)
        kept = []
        for item, verdict, duplicate_of, similarity in zip(
            survivors, decision.verdict, decision.duplicate_of, decision.similarity, strict=True
        ):
            counts[verdict] += 1
            if verdict != "kept":
                self._exclude(
                    pending,
                    counts,
                    file_index,
                    item.index,
                    verdict,
                    similarity,
                    document_id(*duplicate_of) if duplicate_of else None,
                    item.language,
                )
            if verdict == "kept":
                kept.append(item)
                counts["languages"][item.language] = counts["languages"].get(item.language, 0) + 1
        if tokenizer is not None and kept:
            for encoding in tokenizer.encode_batch([k.text for k in kept], add_special_tokens=False):
                ids = np.asarray(encoding.ids, dtype=np.int64)
                pending.tokens.append(ids)
                pending.n_tokens += ids.size
                counts["tokens"] += ids.size
        pending.kept.extend({"text": k.text, "source": source, "file": path.name, "record": k.index, "language": k.language} for k in kept)

    def _exclude(
        self,
        pending: _Pending,
        counts: dict,
        file_index: int,
        record: int,
        rule: str,
        value: float | None,
        duplicate_of: str | None,
        language: str,
    ) -> None:
        row = {"file_index": file_index, "record": record, "rule": rule, "value": value, "duplicate_of": duplicate_of, "language": language}
        pending.exclusions.append(row)
        # The run summary keeps the first few of each rule, so `run show` says why without a query.
        samples = counts.setdefault("samples", {}).setdefault(rule, [])
        if len(samples) < SAMPLES_PER_RULE:
            samples.append({"document": document_id(self.run_id, file_index, record), "value": value, "duplicate_of": duplicate_of})

    def _save(self, *, checkpoint: dict, counts: dict, exclusions: list[dict]) -> None:
        with self.session_factory() as session:
            # The step's exclusion log rows commit with its position: resume neither repeats nor loses one.
            add_exclusions(session=session, run_id=self.run_id, rows=exclusions)
            run = session.get(Run, self.run_id)
            # Fresh containers: the JSON columns are compared by value to detect the change.
            run.checkpoint = _copy(checkpoint)
            run.counts = _copy(counts)
            run.updated_at = utcnow()
            session.commit()

    def _completed_index_dirs(self, session: Session) -> list[Path]:
        ids = session.scalars(select(Run.id).where(Run.status == RunStatus.completed.value).order_by(Run.id))
        return [self.data_dir / "index" / f"run-{run_id:06d}" for run_id in ids]

    def _complete(self, *, source: str, tok_id: str | None, tokenizer, layout: RunLayout) -> Run:
        with self.session_factory() as session:
            run = session.get(Run, self.run_id)
            if tokenizer is not None:
                # Manifest first, then the status: a crash in between is repaired by resuming.
                rebuild_manifest(
                    session=session,
                    data_dir=self.data_dir,
                    source=source,
                    tok_id=tok_id,
                    vocab_size=tokenizer.get_vocab_size(),
                    also=(run.id, run.checkpoint["parts"]),
                )
            run.status = RunStatus.completed.value
            run.finished_at = utcnow()
            session.commit()
            self.on_progress(run.counts, len(run.inputs), len(run.inputs))
            log.info("run completed", extra={"run": run.id, "source": source, "counts": run.counts})
            return run


def _copy(value):
    return json.loads(json.dumps(value))


def rebuild_manifest(
    *, session: Session, data_dir: Path, source: str, tok_id: str, vocab_size: int, also: tuple[int, list[dict]] | None = None
) -> Path | None:
    """Rewrite ``shards/<tokenizer id>/<source>/manifest.json`` from the completed runs (+ ``also``)."""
    rows = session.execute(
        select(Run.id, Run.checkpoint)
        .join(Run.source)
        .where(Source.name == source, Run.tokenizer_id == tok_id, Run.status == RunStatus.completed.value)
    ).all()
    runs = [(run_id, checkpoint.get("parts", [])) for run_id, checkpoint in rows]
    if also is not None:
        runs = [r for r in runs if r[0] != also[0]] + [also]
    return write_source_manifest(source_folder(data_dir, tok_id, source), source=source, tok_id=tok_id, vocab_size=vocab_size, runs=runs)


def start_run(*, session: Session, source: Source, inputs: list[str | Path], tokenizer_path: str | None, backend: str = "local") -> Run:
    """Create a run row after validating inputs; refuses while another run is unfinished."""
    unfinished = session.scalar(select(Run).where(Run.status == RunStatus.running.value))
    if unfinished is not None:
        raise RunError(f"run {unfinished.id} (source {unfinished.source.name!r}) is unfinished: resume or discard it first")
    try:
        files = resolve_inputs(list(inputs))
    except ValueError as e:
        raise RunError(f"source {source.name!r}: {e}") from e
    cfg = PipelineConfig.for_source(source.language, source.pipeline)
    tok_id = None
    if tokenizer_path:
        try:
            tok_id = tokenizer_id(tokenizer_path)
        except OSError as e:
            raise RunError(f"tokenizer {tokenizer_path}: cannot read: {e}") from e
    run = Run(
        source=source,
        backend=backend,
        inputs=[str(f) for f in files],
        config=cfg.model_dump(mode="json"),
        tokenizer_path=str(Path(tokenizer_path).resolve()) if tokenizer_path else None,
        tokenizer_id=tok_id,
        counts=empty_counts(),
        checkpoint={"file_index": 0, "record": 0, "step": 0, "parts": []},
    )
    session.add(run)
    session.commit()
    return run


def discard_run(*, session: Session, data_dir: Path, run_id: int) -> Run:
    """Delete an unfinished run's outputs; the kept set and index stay as the completed runs made them."""
    run = session.get(Run, run_id)
    if run is None:
        raise RunError(f"run {run_id} does not exist")
    if run.status != RunStatus.running.value:
        raise RunError(f"run {run_id} is {run.status}; only an unfinished run can be discarded")
    layout = RunLayout(data_dir, run.source.name, run.id, run.tokenizer_id)
    for path in layout.files_from(0):
        path.unlink()
    shutil.rmtree(layout.index_dir, ignore_errors=True)
    run.status = RunStatus.discarded.value
    run.finished_at = utcnow()
    session.commit()
    if run.tokenizer_id and run.tokenizer_path and Path(run.tokenizer_path).exists():
        # The manifest may already list this run if it crashed between manifest and status.
        from tokenizers import Tokenizer

        rebuild_manifest(
            session=session,
            data_dir=data_dir,
            source=run.source.name,
            tok_id=run.tokenizer_id,
            vocab_size=Tokenizer.from_file(run.tokenizer_path).get_vocab_size(),
        )
    return run


def execute_run(
    *, session_factory: sessionmaker[Session], data_dir: Path, run_id: int, map_batches=None, on_progress: ProgressFn | None = None
) -> Run:
    """Run (or resume) ``run_id`` under the ingest lock; a failure is recorded on the run and re-raised."""
    with ingest_lock(data_dir):
        try:
            return Ingestion(
                session_factory=session_factory, data_dir=data_dir, run_id=run_id, map_batches=map_batches, on_progress=on_progress
            ).execute()
        except BaseException as e:
            with session_factory() as session:
                run = session.get(Run, run_id)
                if run is not None and run.status == RunStatus.running.value:
                    run.error = f"{type(e).__name__}: {e}"
                    session.commit()
            raise
