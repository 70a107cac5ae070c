"""The ingest path: one MetricBatch in one transaction, idempotent by batch_id.

PostgreSQL gets COPY into a temporary table and one INSERT … ON CONFLICT per table (a replayed step
after a rollback overwrites the old value instead of failing); SQLite gets executemany upserts.
Non-finite values are not stored as samples: each becomes evidence of a divergence event.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from heurimentor.contracts.metrics import IngestResult, MetricBatch
from tsm_service.crud._dialect import insert_for, is_postgresql
from tsm_service.crud.events import recommend_rollback, record_event
from tsm_service.crud.jobs import get_or_create_job
from tsm_service.crud.timeline import rewind_on_replay
from tsm_service.models import IngestBatch, Job, Sample, Series, StepRecord

SeriesKey = tuple[str, str]  # (kind, name)
MAX_EVIDENCE_OCCURRENCES = 20


def ingest_batch(session: Session, *, job_name: str, batch: MetricBatch, now: float, rollback_margin_steps: int = 100) -> IngestResult:
    """Store ``batch`` for ``job_name``; the caller commits. A batch_id seen before is acknowledged, not stored."""
    job = get_or_create_job(session, name=job_name, now=now)
    samples, steps, non_finite = _flatten(batch)
    # A (series, step, rank) repeated in the batch is stored once (the last value wins): count what is stored.
    stored = len({(key, step, rank) for key, step, rank, *_ in samples})
    claimed = session.execute(
        insert_for(session, IngestBatch)
        .values(job_id=job.id, batch_id=batch.batch_id, received_at=now, points=stored, evals=len(batch.evals), non_finite=len(non_finite))
        .on_conflict_do_nothing(index_elements=["job_id", "batch_id"])
        .returning(IngestBatch.batch_id)
    ).scalar_one_or_none()
    if claimed is None:
        previous = session.get(IngestBatch, (job.id, batch.batch_id))
        return IngestResult(
            batch_id=batch.batch_id,
            accepted_points=previous.points if previous else 0,
            accepted_evals=previous.evals if previous else 0,
            duplicate=True,
            non_finite=previous.non_finite if previous else 0,
        )

    rewind_on_replay(session, job=job, batch=batch, now=now)  # a resumed trainer replays steps: one timeline
    series_ids = _series_ids(session, job_id=job.id, keys={key for key, *_ in samples} | {key for key, *_ in non_finite})
    sample_rows = {(series_ids[key], step, rank): (value, time) for key, step, rank, value, time in samples}
    step_rows = {(p.step, p.rank): (p.time, p.tokens_seen, p.mixture_version) for p in steps}
    if is_postgresql(session):
        _copy_upsert_postgresql(session, job_id=job.id, sample_rows=sample_rows, step_rows=step_rows)
    else:
        _upsert_sqlite(session, job_id=job.id, sample_rows=sample_rows, step_rows=step_rows)
    _update_series_last(session, sample_rows=sample_rows)
    _update_job_summary(job, batch=batch, now=now)
    if non_finite:
        _flag_divergence(session, job=job, non_finite=non_finite, now=now, margin_steps=rollback_margin_steps)
    return IngestResult(
        batch_id=batch.batch_id, accepted_points=len(sample_rows), accepted_evals=len(batch.evals), non_finite=len(non_finite)
    )


def _flatten(batch: MetricBatch) -> tuple[list[tuple], list[Any], list[tuple]]:
    """(kind, name) samples, step records and the non-finite values, from a batch."""
    samples: list[tuple] = []
    non_finite: list[tuple] = []

    def add(key: SeriesKey, step: int, rank: int, value: float, time: float) -> None:
        (samples if math.isfinite(value) else non_finite).append((key, step, rank, value, time))

    for p in batch.points:
        for name, value in p.scalars.items():
            add(("scalar", name), p.step, p.rank, value, p.time)
        for name, value in p.source_losses.items():
            add(("source_loss", name), p.step, p.rank, value, p.time)
        for stat in p.layer_stats:
            add(("layer_weight_std", stat.layer), p.step, p.rank, stat.weight_std, p.time)
            if stat.update_norm is not None:
                add(("layer_update_norm", stat.layer), p.step, p.rank, stat.update_norm, p.time)
    for e in batch.evals:
        add((e.kind, e.name), e.step, 0, e.value, e.time)
    return samples, batch.points, non_finite


def _series_ids(session: Session, *, job_id: int, keys: set[SeriesKey]) -> dict[SeriesKey, int]:
    def known() -> dict[SeriesKey, int]:
        rows = session.execute(select(Series.kind, Series.name, Series.id).where(Series.job_id == job_id))
        return {(kind, name): series_id for kind, name, series_id in rows}

    ids = known()
    missing = keys - ids.keys()
    if missing:
        session.execute(
            insert_for(session, Series).on_conflict_do_nothing(index_elements=["job_id", "kind", "name"]),
            [{"job_id": job_id, "kind": kind, "name": name} for kind, name in sorted(missing)],
        )
        ids = known()
    return ids


_PG_STAGING = """
CREATE TEMPORARY TABLE IF NOT EXISTS tsm_samples_in (series_id integer, step bigint, rank integer,
    value double precision, time double precision) ON COMMIT DELETE ROWS;
CREATE TEMPORARY TABLE IF NOT EXISTS tsm_steps_in (job_id integer, step bigint, rank integer,
    time double precision, tokens_seen bigint, mixture_version bigint) ON COMMIT DELETE ROWS;
"""


def _copy_upsert_postgresql(session: Session, *, job_id: int, sample_rows: dict, step_rows: dict) -> None:
    connection = session.connection().connection.driver_connection  # psycopg 3
    with connection.cursor() as cursor:
        cursor.execute(_PG_STAGING)
        with cursor.copy("COPY tsm_samples_in (series_id, step, rank, value, time) FROM STDIN") as copy:
            for (series_id, step, rank), (value, time) in sample_rows.items():
                copy.write_row((series_id, step, rank, value, time))
        with cursor.copy("COPY tsm_steps_in (job_id, step, rank, time, tokens_seen, mixture_version) FROM STDIN") as copy:
            for (step, rank), (time, tokens, version) in step_rows.items():
                copy.write_row((job_id, step, rank, time, tokens, version))
        cursor.execute(
            "INSERT INTO tsm_samples SELECT series_id, step, rank, value, time FROM tsm_samples_in "
            "ON CONFLICT (series_id, step, rank) DO UPDATE SET value = EXCLUDED.value, time = EXCLUDED.time"
        )
        cursor.execute(
            "INSERT INTO tsm_steps SELECT job_id, step, rank, time, tokens_seen, mixture_version FROM tsm_steps_in "
            "ON CONFLICT (job_id, step, rank) DO UPDATE SET time = EXCLUDED.time, "
            "tokens_seen = EXCLUDED.tokens_seen, mixture_version = EXCLUDED.mixture_version"
        )


def _upsert_sqlite(session: Session, *, job_id: int, sample_rows: dict, step_rows: dict) -> None:
    if sample_rows:
        statement = insert_for(session, Sample)
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["series_id", "step", "rank"], set_={"value": statement.excluded.value, "time": statement.excluded.time}
            ),
            [{"series_id": s, "step": step, "rank": rank, "value": v, "time": t} for (s, step, rank), (v, t) in sample_rows.items()],
        )
    if step_rows:
        statement = insert_for(session, StepRecord)
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["job_id", "step", "rank"],
                set_={
                    "time": statement.excluded.time,
                    "tokens_seen": statement.excluded.tokens_seen,
                    "mixture_version": statement.excluded.mixture_version,
                },
            ),
            [
                {"job_id": job_id, "step": step, "rank": rank, "time": t, "tokens_seen": tokens, "mixture_version": version}
                for (step, rank), (t, tokens, version) in step_rows.items()
            ],
        )


def _update_series_last(session: Session, *, sample_rows: dict) -> None:
    latest: dict[int, tuple[int, int, float]] = {}
    for (series_id, step, rank), (value, _) in sample_rows.items():
        # Highest step wins; at equal steps the lowest rank (rank 0 is the reporting rank by convention).
        if series_id not in latest or (step, -rank) > (latest[series_id][0], -latest[series_id][1]):
            latest[series_id] = (step, rank, value)
    if not latest:
        return
    table = Series.__table__
    session.execute(
        update(table)
        .where(table.c.id == bindparam("sid"), (table.c.last_step.is_(None)) | (table.c.last_step <= bindparam("step")))
        .values(last_step=bindparam("step"), last_value=bindparam("value")),
        # In id order, so concurrent batches of different ranks lock series rows in the same order.
        [{"sid": sid, "step": step, "value": value} for sid, (step, _, value) in sorted(latest.items())],
        execution_options={"synchronize_session": False},
    )


def _update_job_summary(job: Job, *, batch: MetricBatch, now: float) -> None:
    job.last_seen_at = now
    if batch.completed_step is not None:
        job.completed_step = batch.completed_step
    elif job.completed_step is not None and any(p.step > job.completed_step for p in batch.points):
        job.completed_step = None  # trained on past its end (more steps, same name): alive again
    if not batch.points:
        return
    # Training again: a resumed job reports before the operator says so (it repeats "suspended" while it is).
    job.suspended_at = None
    newest = max(batch.points, key=lambda p: (p.step, p.time))
    if job.last_step is None or newest.step >= job.last_step:
        job.last_step = newest.step
        job.last_step_time = max(p.time for p in batch.points if p.step == newest.step)
        if newest.mixture_version is not None:
            job.mixture_version = newest.mixture_version
    job.tokens_seen = max(job.tokens_seen or 0, max(p.tokens_seen for p in batch.points))


def _flag_divergence(session: Session, *, job: Job, non_finite: list[tuple], now: float, margin_steps: int) -> None:
    """One divergence event (and rollback recommendation) per series that went non-finite in this batch."""
    by_series: dict[SeriesKey, list[tuple]] = defaultdict(list)
    for key, step, rank, value, _ in non_finite:
        by_series[key].append((step, rank, value))
    for (kind, name), occurrences in sorted(by_series.items()):
        occurrences.sort()
        first_step, last_step = occurrences[0][0], occurrences[-1][0]
        subject = f"{kind}/{name}"
        evidence = {
            "reason": "non_finite",
            "series_kind": kind,
            "series": name,
            "count": len(occurrences),
            "occurrences": [{"step": s, "rank": r, "value": str(v)} for s, r, v in occurrences[:MAX_EVIDENCE_OCCURRENCES]],
        }
        message = f"job {job.name}: {subject} is non-finite ({occurrences[0][2]}) from step {first_step}"
        event_id = record_event(
            session,
            job_id=job.id,
            kind="divergence",
            severity="critical",
            step=first_step,
            subject=subject,
            message=message,
            evidence=evidence,
            now=now,
        )
        if event_id is not None:
            recommend_rollback(
                session,
                job_id=job.id,
                event_id=event_id,
                first_bad_step=first_step,
                last_bad_step=last_step,
                margin_steps=margin_steps,
                reason=message,
                now=now,
            )
