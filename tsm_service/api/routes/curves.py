from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from heurimentor.contracts.bounds import INT32_MAX, INT64_MAX
from heurimentor.contracts.metrics import SeriesName
from heurimentor.service_kit.auth import AUTH_RESPONSES
from heurimentor.service_kit.errors import error_responses, unprocessable
from tsm_service.api.deps import JobDep, ReaderDep, SessionDep
from tsm_service.crud.curves import list_series, read_curve
from tsm_service.schemas.curves import CurvePublic, SeriesKind, SeriesPublic

router = APIRouter(prefix="/v1/jobs/{job}", tags=["curves"], dependencies=[ReaderDep], responses=AUTH_RESPONSES)


@router.get(
    "/series", response_model=list[SeriesPublic], summary="The curves a job has, with their last values", responses=error_responses(404)
)
def read_series(job: JobDep, session: SessionDep, kind: SeriesKind | None = None) -> list[SeriesPublic]:
    return list_series(session, job=job, kind=kind)


@router.get(
    "/curves/{kind}/{name}",
    response_model=CurvePublic,
    summary="One curve over a step range, averaged over ranks (or one rank), downsampled to max_points",
    responses=error_responses(404),
)
def read_curve_route(
    job: JobDep,
    session: SessionDep,
    kind: SeriesKind,
    name: SeriesName,
    step_min: Annotated[int, Query(ge=0, le=INT64_MAX)] = 0,
    step_max: Annotated[int | None, Query(ge=0, le=INT64_MAX)] = None,
    rank: Annotated[int | None, Query(ge=0, le=INT32_MAX)] = None,
    max_points: Annotated[int, Query(ge=1, le=100_000)] = 1000,
) -> CurvePublic:
    if step_max is not None and step_max < step_min:
        raise unprocessable(f"step_max {step_max} is below step_min {step_min}", "query", "step_max")
    curve = read_curve(session, job=job, kind=kind, name=name, step_min=step_min, step_max=step_max, rank=rank, max_points=max_points)
    if curve is None:
        raise HTTPException(status_code=404, detail=f"job {job.name!r} has no {kind} series {name!r}")
    return curve
