from __future__ import annotations

import math

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tsm_service.models import Job, Sample, Series
from tsm_service.schemas.curves import CurvePoint, CurvePublic, SeriesPublic


def list_series(session: Session, *, job: Job, kind: str | None = None) -> list[SeriesPublic]:
    query = select(Series).where(Series.job_id == job.id)
    if kind is not None:
        query = query.where(Series.kind == kind)
    return [
        SeriesPublic(kind=s.kind, name=s.name, last_step=s.last_step, last_value=s.last_value)
        for s in session.scalars(query.order_by(Series.kind, Series.name))
    ]


def read_curve(
    session: Session,
    *,
    job: Job,
    kind: str,
    name: str,
    step_min: int = 0,
    step_max: int | None = None,
    rank: int | None = None,
    max_points: int = 1000,
) -> CurvePublic | None:
    """The curve of one series in [step_min, step_max], averaged over ranks (or one rank), bucketed so at
    most ``max_points`` come back. None when the job has no such series."""
    series_id = session.scalar(select(Series.id).where(Series.job_id == job.id, Series.kind == kind, Series.name == name))
    if series_id is None:
        return None
    where = [Sample.series_id == series_id, Sample.step >= step_min]
    if step_max is not None:
        where.append(Sample.step <= step_max)
    if rank is not None:
        where.append(Sample.rank == rank)
    first, last = session.execute(select(func.min(Sample.step), func.max(Sample.step)).where(*where)).one()
    bucket = 1 if first is None else max(1, math.ceil((last - first + 1) / max_points))
    key = (Sample.step - first) // bucket if bucket > 1 else Sample.step
    rows = session.execute(
        select(func.min(Sample.step), func.avg(Sample.value), func.min(Sample.value), func.max(Sample.value), func.count())
        .where(*where)
        .group_by(key)
        .order_by(func.min(Sample.step))
    )
    points = [CurvePoint(step=step, value=mean, min=low, max=high, count=count) for step, mean, low, high, count in rows]
    return CurvePublic(job=job.name, kind=kind, name=name, rank=rank, bucket_steps=bucket, points=points)
