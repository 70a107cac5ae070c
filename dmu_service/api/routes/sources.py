from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path

from dmu_service.api.deps import AdminDep, ReaderDep, SessionDep
from dmu_service.crud import sources as crud
from dmu_service.pipeline.config import PipelineConfig
from dmu_service.schemas.sources import SourceCreate, SourcePublic, SourceUpdate
from heurimentor.contracts.mixtures import MIXTURE_NAME_PATTERN
from heurimentor.service_kit.auth import AUTH_RESPONSES
from heurimentor.service_kit.errors import error_responses

router = APIRouter(prefix="/sources", tags=["sources"], responses=AUTH_RESPONSES)

# Source names follow the mixture name pattern; anything else (NUL included) is a 422, not a query.
SourceName = Annotated[str, Path(pattern=MIXTURE_NAME_PATTERN, description="source name")]


def _validate_pipeline(name: str, language: str, overrides: dict) -> None:
    try:
        PipelineConfig.for_source(language, overrides)
    except ValueError as e:
        raise HTTPException(422, detail=f"source {name!r}: invalid pipeline settings: {e}") from e


@router.post("", status_code=201, response_model=SourcePublic, dependencies=[AdminDep], responses=error_responses(409))
def create_source(body: SourceCreate, session: SessionDep) -> SourcePublic:
    _validate_pipeline(body.name, body.language, body.pipeline)
    try:
        source = crud.create_source(session=session, source_in=body)
    except crud.SourceExists as e:
        raise HTTPException(409, detail=str(e)) from e
    session.commit()
    return source


@router.get("", response_model=list[SourcePublic], dependencies=[ReaderDep])
def list_sources(session: SessionDep) -> list[SourcePublic]:
    return crud.list_sources(session=session)


@router.get("/{name}", response_model=SourcePublic, dependencies=[ReaderDep], responses=error_responses(404))
def read_source(name: SourceName, session: SessionDep) -> SourcePublic:
    source = crud.get_source(session=session, name=name)
    if source is None:
        raise HTTPException(404, detail=f"source {name!r} does not exist")
    return source


@router.patch("/{name}", response_model=SourcePublic, dependencies=[AdminDep], responses=error_responses(404))
def update_source(name: SourceName, body: SourceUpdate, session: SessionDep) -> SourcePublic:
    source = crud.get_source(session=session, name=name)
    if source is None:
        raise HTTPException(404, detail=f"source {name!r} does not exist")
    if body.pipeline is not None:
        _validate_pipeline(name, source.language, body.pipeline)
    source = crud.update_source(session=session, source=source, source_in=body)
    session.commit()
    return source
