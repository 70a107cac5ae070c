from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from tsm_service.config import Settings
from tsm_service.crud._dialect import insert_for
from tsm_service.models import Job
from tsm_service.schemas.jobs import JobConfig, JobConfigUpdate, JobPublic


def get_or_create_job(session: Session, *, name: str, now: float) -> Job:
    """The job row, created on first contact (safe when two ranks race to create it)."""
    job = session.scalars(select(Job).where(Job.name == name)).one_or_none()
    if job is not None:
        return job
    session.execute(
        insert_for(session, Job)
        .values(name=name, created_at=now, last_seen_at=now, tokens_seen=0, evaluated_step=-1)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    return session.scalars(select(Job).where(Job.name == name)).one()


def get_job(session: Session, *, name: str) -> Job | None:
    return session.scalars(select(Job).where(Job.name == name)).one_or_none()


def list_jobs(session: Session) -> list[Job]:
    return list(session.scalars(select(Job).order_by(Job.name)))


def job_config(job: Job, *, settings: Settings) -> JobConfig:
    """The job's overrides on top of the service defaults."""
    base = JobConfig(detectors=settings.detectors, policy=settings.policy).model_dump()
    for section, values in (job.config or {}).items():
        base[section] = values
    return JobConfig.model_validate(base)


def update_job_config(session: Session, *, job: Job, update: JobConfigUpdate) -> None:
    config = dict(job.config or {})
    for section, value in update.model_dump(exclude_none=True).items():
        config[section] = value
    job.config = config
    session.flush()


def job_public(job: Job, *, settings: Settings) -> JobPublic:
    return JobPublic(
        name=job.name,
        created_at=job.created_at,
        last_seen_at=job.last_seen_at,
        last_step=job.last_step,
        last_step_time=job.last_step_time,
        tokens_seen=job.tokens_seen,
        mixture_version=job.mixture_version,
        step_time_seconds=job.step_time_seconds,
        step_time_skew_ratio=job.step_time_skew_ratio,
        evaluated_step=job.evaluated_step,
        completed_step=job.completed_step,
        suspended_at=job.suspended_at,
        config=job_config(job, settings=settings),
    )
