from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from heurimentor.contracts.bounds import INT32_MAX, INT64_MAX
from heurimentor.service_kit.auth import AUTH_RESPONSES
from heurimentor.service_kit.errors import error_responses
from tsm_service.api.deps import JobDep, JobWriterDep, ReaderDep, SessionDep
from tsm_service.crud.events import get_rollback, list_events, list_rollbacks, rollback_public
from tsm_service.schemas.events import EventKind, EventPublic, RollbackPublic, RollbackStatus, RollbackUpdate

router = APIRouter(prefix="/v1/jobs/{job}", tags=["events"], dependencies=[ReaderDep], responses=AUTH_RESPONSES)


@router.get(
    "/events",
    response_model=list[EventPublic],
    summary="Findings and actions with their evidence; page with since_id",
    responses=error_responses(404),
)
def read_events(
    job: JobDep,
    session: SessionDep,
    kind: EventKind | None = None,
    since_id: Annotated[int, Query(ge=0, le=INT32_MAX)] = 0,
    step_min: Annotated[int | None, Query(ge=0, le=INT64_MAX)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[EventPublic]:
    return list_events(session, job=job, kind=kind, since_id=since_id, step_min=step_min, limit=limit)


@router.get(
    "/rollbacks",
    response_model=list[RollbackPublic],
    summary="Rollback recommendations (checkpoint step to return to, data range to skip) for the operator",
    responses=error_responses(404),
)
def read_rollbacks(job: JobDep, session: SessionDep, status: RollbackStatus | None = None) -> list[RollbackPublic]:
    return list_rollbacks(session, job=job, status=status)


@router.patch(
    "/rollbacks/{rollback_id}",
    response_model=RollbackPublic,
    dependencies=[JobWriterDep],
    summary="Acknowledge (acted on) or dismiss a recommendation",
    responses=error_responses(404, 409),
)
def patch_rollback(
    job: JobDep, rollback_id: Annotated[int, Path(ge=0, le=INT32_MAX)], update: RollbackUpdate, session: SessionDep
) -> RollbackPublic:
    recommendation = get_rollback(session, job=job, rollback_id=rollback_id)
    if recommendation is None:
        raise HTTPException(status_code=404, detail=f"job {job.name!r} has no rollback recommendation {rollback_id}")
    if recommendation.status != "open" and recommendation.status != update.status:
        raise HTTPException(status_code=409, detail=f"rollback {rollback_id} of job {job.name!r} is already {recommendation.status}")
    recommendation.status = update.status
    recommendation.updated_at = time.time()
    session.commit()
    return rollback_public(recommendation, job=job)
