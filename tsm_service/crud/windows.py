"""Recent windows of a job's series, shaped for the detectors and the mixture policy."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tsm_service.models import Event, Sample, Series, StepRecord


def _series_id(session: Session, *, job_id: int, kind: str, name: str) -> int | None:
    return session.scalar(select(Series.id).where(Series.job_id == job_id, Series.kind == kind, Series.name == name))


def scalar_window(session: Session, *, job_id: int, name: str, after_step: int) -> tuple[np.ndarray, np.ndarray]:
    """(steps, rank-averaged values) of a scalar after ``after_step``."""
    series_id = _series_id(session, job_id=job_id, kind="scalar", name=name)
    if series_id is None:
        return np.empty(0, dtype=np.int64), np.empty(0)
    rows = session.execute(
        select(Sample.step, func.avg(Sample.value))
        .where(Sample.series_id == series_id, Sample.step > after_step)
        .group_by(Sample.step)
        .order_by(Sample.step)
    ).all()
    return np.array([r[0] for r in rows], dtype=np.int64), np.array([r[1] for r in rows], dtype=float)


def per_rank_window(session: Session, *, job_id: int, name: str, reports: int) -> tuple[int | None, dict[int, np.ndarray]]:
    """(first step of the window, rank -> values) of a scalar over its last ``reports`` steps."""
    series_id = _series_id(session, job_id=job_id, kind="scalar", name=name)
    if series_id is None:
        return None, {}
    recent = (
        select(Sample.step)
        .where(Sample.series_id == series_id)
        .group_by(Sample.step)
        .order_by(Sample.step.desc())
        .limit(reports)
        .subquery()
    )
    first = session.scalar(select(func.min(recent.c.step)))
    if first is None:
        return None, {}
    by_rank: dict[int, list[float]] = defaultdict(list)
    for rank, value in session.execute(
        select(Sample.rank, Sample.value).where(Sample.series_id == series_id, Sample.step >= first).order_by(Sample.step)
    ):
        by_rank[rank].append(value)
    return first, {rank: np.array(values) for rank, values in by_rank.items()}


def layer_std_window(session: Session, *, job_id: int, after_step: int) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """(steps, tokens seen, layer names, std matrix reports x layers) at the steps where every layer reported."""
    series = dict(session.execute(select(Series.id, Series.name).where(Series.job_id == job_id, Series.kind == "layer_weight_std")).all())
    if not series:
        return np.empty(0, dtype=np.int64), np.empty(0), [], np.empty((0, 0))
    values: dict[int, dict[str, float]] = defaultdict(dict)
    for series_id, step, value in session.execute(
        select(Sample.series_id, Sample.step, func.avg(Sample.value))
        .where(Sample.series_id.in_(series), Sample.step > after_step)
        .group_by(Sample.series_id, Sample.step)
    ):
        values[step][series[series_id]] = value
    layers = sorted(series.values())
    steps = sorted(step for step, per_layer in values.items() if len(per_layer) == len(layers))
    if not steps:
        return np.empty(0, dtype=np.int64), np.empty(0), layers, np.empty((0, len(layers)))
    tokens = dict(
        session.execute(
            select(StepRecord.step, func.max(StepRecord.tokens_seen))
            .where(StepRecord.job_id == job_id, StepRecord.step.in_(steps))
            .group_by(StepRecord.step)
        ).all()
    )
    matrix = np.array([[values[step][layer] for layer in layers] for step in steps])
    return (np.array(steps, dtype=np.int64), np.array([tokens.get(step, 0) for step in steps], dtype=float), layers, matrix)


def source_losses(session: Session, *, job_id: int, last_step: int, window_steps: int) -> dict[str, float]:
    """Mean training loss per source over the last ``window_steps`` steps (all ranks)."""
    rows = session.execute(
        select(Series.name, func.avg(Sample.value))
        .join(Sample, Sample.series_id == Series.id)
        .where(Series.job_id == job_id, Series.kind == "source_loss", Sample.step > last_step - window_steps)
        .group_by(Series.name)
    )
    return {name: float(value) for name, value in rows}


def latest_event_step(session: Session, *, job_id: int, kind: str, subject: str | None = None) -> int | None:
    query = select(func.max(Event.step)).where(Event.job_id == job_id, Event.kind == kind)
    if subject is not None:
        query = query.where(Event.subject == subject)
    return session.scalar(query)


def step_before_reports(session: Session, *, job_id: int, kind: str, upto_step: int, reports: int) -> int:
    """A step just before the last ``reports`` reports (at or before ``upto_step``) of the job's first series
    of ``kind``: the history a detector re-reads besides what is new."""
    series_id = session.scalar(select(Series.id).where(Series.job_id == job_id, Series.kind == kind).order_by(Series.name).limit(1))
    if series_id is None:
        return upto_step
    recent = (
        select(Sample.step)
        .where(Sample.series_id == series_id, Sample.step <= upto_step)
        .group_by(Sample.step)
        .order_by(Sample.step.desc())
        .limit(reports)
        .subquery()
    )
    first = session.scalar(select(func.min(recent.c.step)))
    return first - 1 if first is not None else upto_step
