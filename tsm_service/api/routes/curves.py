from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from tsm_service.api.deps import JobDep, ReaderDep, SessionDep
from tsm_service.crud.curves import list_series, read_curve
from tsm_service.schemas.curves import CurvePublic, SeriesKind, SeriesPublic

router = APIRouter(prefix="/v1/jobs/{job}", tags=["curves"], dependencies=[ReaderDep])


@router.get("/series", response_model=list[SeriesPublic], summary="The curves a job has, with their last values")
def read_series(job: JobDep, session: SessionDep, kind: SeriesKind | None = None) -> list[SeriesPublic]:
    return list_series(session, job=job, kind=kind)


@router.get("/curves/{kind}/{name}", response_model=CurvePublic,
            summary="One curve over a step range, averaged over ranks (or one rank), downsampled to max_points")
def read_curve_route(job: JobDep, session: SessionDep, kind: SeriesKind, name: str,
                     step_min: Annotated[int, Query(ge=0)] = 0, step_max: Annotated[int | None, Query(ge=0)] = None,
                     rank: Annotated[int | None, Query(ge=0)] = None,
                     max_points: Annotated[int, Query(ge=1, le=100_000)] = 1000) -> CurvePublic:
    if step_max is not None and step_max < step_min:
        raise HTTPException(status_code=422, detail=f"step_max {step_max} is below step_min {step_min}")
    curve = read_curve(session, job=job, kind=kind, name=name, step_min=step_min, step_max=step_max, rank=rank,
                       max_points=max_points)
    if curve is None:
        raise HTTPException(status_code=404, detail=f"job {job.name!r} has no {kind} series {name!r}")
    return curve
