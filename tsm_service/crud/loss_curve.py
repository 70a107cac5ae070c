"""A job's training curve with what explains its level (per-source losses, mixture version, LR, ranks),
shaped as the loss detectors' ``LossCurve``."""

from __future__ import annotations

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tsm_service.crud.windows import scalar_window
from tsm_service.detectors.expected import LossCurve
from tsm_service.models import Sample, Series, StepRecord


def _aligned(steps: np.ndarray, rows: list[tuple[int, float]], fill: float) -> np.ndarray:
    by_step = dict(rows)
    return np.array([by_step.get(int(s), fill) for s in steps], dtype=float)


def loss_curve(session: Session, *, job_id: int, after_step: int) -> LossCurve:
    """The loss after ``after_step`` and, aligned with its steps, every source's loss, the mixture version
    and LR in force and the number of ranks that reported the step."""
    steps, loss = scalar_window(session, job_id=job_id, name="loss", after_step=after_step)
    if not len(steps):
        return LossCurve(steps=steps, loss=loss)
    sources: dict[str, list[tuple[int, float]]] = {}
    for name, step, value in session.execute(
        select(Series.name, Sample.step, func.avg(Sample.value))
        .join(Sample, Sample.series_id == Series.id)
        .where(Series.job_id == job_id, Series.kind == "source_loss", Sample.step > after_step)
        .group_by(Series.name, Sample.step)
    ):
        sources.setdefault(name, []).append((step, value))
    lr_steps, lr = scalar_window(session, job_id=job_id, name="lr", after_step=after_step)
    records = session.execute(
        select(StepRecord.step, func.max(StepRecord.mixture_version), func.count(StepRecord.rank))
        .where(StepRecord.job_id == job_id, StepRecord.step > after_step)
        .group_by(StepRecord.step)
    ).all()
    return LossCurve(
        steps=steps,
        loss=loss,
        source_losses={name: _aligned(steps, rows, np.nan) for name, rows in sources.items()},
        mixture_version=_aligned(steps, [(s, v if v is not None else -1) for s, v, _ in records], -1).astype(int),
        lr=_aligned(steps, list(zip(lr_steps.tolist(), lr.tolist())), np.nan) if len(lr_steps) else None,
        world_size=_aligned(steps, [(s, n) for s, _, n in records], 0).astype(int),
    )
