from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from heurimentor.service_kit.auth import AUTH_RESPONSES, principal_of
from heurimentor.service_kit.errors import error_responses
from tsm_service.api.deps import JobDep, JobName, JobWriterDep, ReaderDep, SessionDep, SettingsDep
from tsm_service.crud.jobs import get_or_create_job, job_public, list_jobs, update_job_config
from tsm_service.schemas.events import EventPublic
from tsm_service.schemas.jobs import JobConfigUpdate, JobPublic, JobSuspension

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[ReaderDep], responses=AUTH_RESPONSES)


@router.get("", response_model=list[JobPublic], summary="Jobs that have sent metrics")
def read_jobs(session: SessionDep, settings: SettingsDep) -> list[JobPublic]:
    return [job_public(job, settings=settings) for job in list_jobs(session)]


@router.get("/{job}", response_model=JobPublic, summary="A job's live summary and effective configuration", responses=error_responses(404))
def read_job(job: JobDep, settings: SettingsDep) -> JobPublic:
    return job_public(job, settings=settings)


@router.patch(
    "/{job}/config",
    response_model=JobPublic,
    dependencies=[JobWriterDep],
    summary="Override detector thresholds and/or the mixture policy of one job (before or while it trains)",
)
def patch_job_config(job: JobName, update: JobConfigUpdate, session: SessionDep, settings: SettingsDep, request: Request) -> JobPublic:
    # The TSM writes a policy's mixture with its own DMU token: which mixtures a job may name is the admin's call.
    mixture = update.policy.mixture if update.policy else None
    principal = principal_of(request)
    if mixture and not settings.policy_may_write(mixture) and not (principal and principal.scope == "admin"):
        raise HTTPException(
            status_code=403,
            detail=f"job {job!r}: mixture {mixture!r} is not in the TSM's policy_mixtures; an admin token or the allow-list may add it",
        )
    found = get_or_create_job(session, name=job, now=time.time())  # the operator may configure a job before it starts
    update_job_config(session, job=found, update=update)
    session.commit()
    return job_public(found, settings=settings)


@router.put(
    "/{job}/suspension",
    response_model=JobPublic,
    dependencies=[JobWriterDep],
    summary="The operator suspended (or resumed) the job: no stall findings while it is suspended",
    responses=error_responses(404),
)
def put_suspension(job: JobDep, suspension: JobSuspension, session: SessionDep, settings: SettingsDep) -> JobPublic:
    if suspension.suspended and job.suspended_at is None:
        job.suspended_at = time.time()
    elif not suspension.suspended:
        job.suspended_at = None
    session.commit()
    return job_public(job, settings=settings)


@router.post(
    "/{job}/evaluate",
    response_model=list[EventPublic],
    dependencies=[JobWriterDep],
    summary="Run the detectors and the mixture policy on the job now; returns the new events",
    responses=error_responses(404),
)
async def evaluate_job_now(job: JobDep, request: Request) -> list[EventPublic]:
    monitor = request.app.state.monitor
    return await run_in_threadpool(monitor.evaluate, job.name, time.time())
