"""One timeline per job: a trainer that resumed from an earlier checkpoint replays steps the TSM has seen.

A point at or before its rank's last step that was taken *after* it (a later trainer clock than that
step's on the same rank) means a resume: after a rollback the operator applied, a restart or a rescale. The steps of the
abandoned timeline from the first replayed step on are dropped (the replay overwrites them anyway; left
in place, old and new values would interleave and the detectors would see a jump where the timelines
meet), the detectors judge the replayed steps anew, and a ``resumed`` event records the resume, naming
the rollback it carried out when there was one (``replays.py`` then tells whether the trouble recurred).
Judged per rank: every rank reports each step, so rank 1's point of step N, taken a few milliseconds
after rank 0's, is no replay of it. Late batches and retried batches carry their original times and
are no resume.
"""

from __future__ import annotations

import logging

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.orm import Session

from heurimentor.contracts.metrics import MetricBatch
from tsm_service.crud.events import record_event
from tsm_service.models import Job, RollbackRecommendation, Sample, Series, StepRecord

log = logging.getLogger(__name__)


def applied_rollback(session: Session, *, job_id: int, first_replayed: int, abandoned_to: int) -> RollbackRecommendation | None:
    """The acknowledged recommendation this resume carries out: the latest whose checkpoint step the
    replay starts at or after and whose trouble lay in the abandoned steps."""
    return session.scalars(
        select(RollbackRecommendation)
        .where(
            RollbackRecommendation.job_id == job_id,
            RollbackRecommendation.status == "acknowledged",
            RollbackRecommendation.resume_before_step >= first_replayed - 1,
            RollbackRecommendation.resume_before_step <= abandoned_to,
        )
        .order_by(RollbackRecommendation.updated_at.desc(), RollbackRecommendation.id.desc())
        .limit(1)
    ).one_or_none()


def _latest_step_per_rank(session: Session, *, job_id: int, ranks: set[int]) -> dict[int, tuple[int, float]]:
    """rank -> (its last recorded step, that step's trainer time)."""
    last = (
        select(StepRecord.rank, func.max(StepRecord.step).label("step"))
        .where(StepRecord.job_id == job_id, StepRecord.rank.in_(ranks))
        .group_by(StepRecord.rank)
        .subquery()
    )
    rows = session.execute(
        select(StepRecord.rank, StepRecord.step, StepRecord.time)
        .join(last, and_(StepRecord.rank == last.c.rank, StepRecord.step == last.c.step))
        .where(StepRecord.job_id == job_id)
    )
    return {rank: (step, time) for rank, step, time in rows}


def rewind_on_replay(session: Session, *, job: Job, batch: MetricBatch, now: float) -> int | None:
    """Drop the abandoned timeline when ``batch`` replays steps; returns the first replayed step, if any."""
    if job.last_step is None or job.last_step_time is None:
        return None
    latest = _latest_step_per_rank(session, job_id=job.id, ranks={p.rank for p in batch.points})
    replayed = [p.step for p in batch.points if p.rank in latest and p.step <= latest[p.rank][0] and p.time > latest[p.rank][1]]
    if not replayed:
        return None
    first, abandoned_to = min(replayed), job.last_step
    series = select(Series.id).where(Series.job_id == job.id).scalar_subquery()
    session.execute(delete(Sample).where(Sample.series_id.in_(series), Sample.step >= first))
    session.execute(delete(StepRecord).where(StepRecord.job_id == job.id, StepRecord.step >= first))
    session.execute(update(Series).where(Series.job_id == job.id, Series.last_step >= first).values(last_step=None, last_value=None))
    job.last_step, job.last_step_time = first - 1, None
    job.evaluated_step = min(job.evaluated_step, first - 1)
    rollback = applied_rollback(session, job_id=job.id, first_replayed=first, abandoned_to=abandoned_to)
    evidence = {
        "first_replayed_step": first,
        "abandoned_to_step": abandoned_to,
        "rollback_id": rollback.id if rollback else None,
        "skip_steps": [rollback.skip_from_step, rollback.skip_to_step] if rollback else None,
    }
    by = f" carrying out rollback {rollback.id}" if rollback else ""
    record_event(
        session,
        job_id=job.id,
        kind="resumed",
        severity="info",
        step=first,
        subject=f"steps/{first}-{abandoned_to}",
        message=(
            f"job {job.name}: resumed at step {first}{by}; steps {first}..{abandoned_to} of the earlier run are replaced by the replay"
        ),
        evidence=evidence,
        now=now,
    )
    log.info(
        "resumed",
        extra={"job": job.name, "first_replayed_step": first, "abandoned_to_step": abandoned_to, "rollback_id": evidence["rollback_id"]},
    )
    return first
