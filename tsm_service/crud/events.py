from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tsm_service.crud._dialect import insert_for
from tsm_service.models import Event, Job, RollbackRecommendation, StepRecord
from tsm_service.schemas.events import EventPublic, RollbackPublic


def record_event(
    session: Session, *, job_id: int, kind: str, severity: str, step: int, subject: str, message: str, evidence: dict[str, Any], now: float
) -> int | None:
    """Store a finding; None when the same (kind, step, subject) was already recorded."""
    statement = (
        insert_for(session, Event)
        .values(
            job_id=job_id,
            kind=kind,
            severity=severity,
            step=step,
            subject=subject[:200],
            message=message,
            evidence=evidence,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["job_id", "kind", "step", "subject"])
        .returning(Event.id)
    )
    return session.execute(statement).scalar_one_or_none()


def tokens_at(session: Session, *, job_id: int, step: int) -> int | None:
    """Tokens the job had consumed by ``step`` (the latest record at or before it)."""
    return session.scalar(select(func.max(StepRecord.tokens_seen)).where(StepRecord.job_id == job_id, StepRecord.step <= step))


def recommend_rollback(
    session: Session, *, job_id: int, event_id: int, first_bad_step: int, last_bad_step: int, margin_steps: int, reason: str, now: float
) -> RollbackRecommendation:
    """Return to a checkpoint ``margin_steps`` before trouble began and skip the data fed since (PaLM's recipe)."""
    resume_before = max(0, first_bad_step - margin_steps)
    recommendation = RollbackRecommendation(
        job_id=job_id,
        event_id=event_id,
        resume_before_step=resume_before,
        skip_from_step=resume_before,
        skip_to_step=last_bad_step,
        skip_from_tokens=tokens_at(session, job_id=job_id, step=resume_before),
        skip_to_tokens=tokens_at(session, job_id=job_id, step=last_bad_step),
        reason=reason,
        status="open",
        created_at=now,
        updated_at=now,
    )
    session.add(recommendation)
    session.flush()
    return recommendation


def list_events(
    session: Session, *, job: Job, kind: str | None = None, since_id: int = 0, step_min: int | None = None, limit: int = 100
) -> list[EventPublic]:
    query = select(Event).where(Event.job_id == job.id, Event.id > since_id)
    if kind is not None:
        query = query.where(Event.kind == kind)
    if step_min is not None:
        query = query.where(Event.step >= step_min)
    events = session.scalars(query.order_by(Event.id).limit(limit))
    return [
        EventPublic(
            id=e.id,
            job=job.name,
            kind=e.kind,
            severity=e.severity,
            step=e.step,
            subject=e.subject,
            message=e.message,
            evidence=e.evidence,
            created_at=e.created_at,
        )
        for e in events
    ]


def count_events(session: Session) -> dict[tuple[str, str], int]:
    """(job name, kind) -> number of events, for /metrics."""
    rows = session.execute(
        select(Job.name, Event.kind, func.count()).select_from(Event).join(Job, Job.id == Event.job_id).group_by(Job.name, Event.kind)
    )
    return {(name, kind): count for name, kind, count in rows}


def count_rollbacks(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(Job.name, func.count())
        .select_from(RollbackRecommendation)
        .join(Job, Job.id == RollbackRecommendation.job_id)
        .group_by(Job.name)
    )
    return {name: count for name, count in rows}


def rollback_public(recommendation: RollbackRecommendation, *, job: Job) -> RollbackPublic:
    r = recommendation
    return RollbackPublic(
        id=r.id,
        job=job.name,
        event_id=r.event_id,
        resume_before_step=r.resume_before_step,
        skip_from_step=r.skip_from_step,
        skip_to_step=r.skip_to_step,
        skip_from_tokens=r.skip_from_tokens,
        skip_to_tokens=r.skip_to_tokens,
        reason=r.reason,
        status=r.status,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


def list_rollbacks(session: Session, *, job: Job, status: str | None = None) -> list[RollbackPublic]:
    query = select(RollbackRecommendation).where(RollbackRecommendation.job_id == job.id)
    if status is not None:
        query = query.where(RollbackRecommendation.status == status)
    return [rollback_public(r, job=job) for r in session.scalars(query.order_by(RollbackRecommendation.id))]


def get_rollback(session: Session, *, job: Job, rollback_id: int) -> RollbackRecommendation | None:
    return session.scalars(
        select(RollbackRecommendation).where(RollbackRecommendation.job_id == job.id, RollbackRecommendation.id == rollback_id)
    ).one_or_none()
