from __future__ import annotations

from fastapi import APIRouter, HTTPException

from dmu_service.api.deps import ReaderDep, SessionDep, WriterDep
from dmu_service.crud import sources as crud
from dmu_service.pipeline.config import PipelineConfig
from dmu_service.schemas.sources import SourceCreate, SourcePublic, SourceUpdate

router = APIRouter(prefix="/sources", tags=["sources"])


def _validate_pipeline(name: str, language: str, overrides: dict) -> None:
    try:
        PipelineConfig.for_source(language, overrides)
    except ValueError as e:
        raise HTTPException(422, detail=f"source {name!r}: invalid pipeline settings: {e}") from e


@router.post("", status_code=201, response_model=SourcePublic, dependencies=[WriterDep])
def create_source(body: SourceCreate, session: SessionDep) -> SourcePublic:
    _validate_pipeline(body.name, body.language, body.pipeline)
    try:
        return crud.create_source(session=session, source_in=body)
    except crud.SourceExists as e:
        raise HTTPException(409, detail=str(e)) from e


@router.get("", response_model=list[SourcePublic], dependencies=[ReaderDep])
def list_sources(session: SessionDep) -> list[SourcePublic]:
    return crud.list_sources(session=session)


@router.get("/{name}", response_model=SourcePublic, dependencies=[ReaderDep])
def read_source(name: str, session: SessionDep) -> SourcePublic:
    source = crud.get_source(session=session, name=name)
    if source is None:
        raise HTTPException(404, detail=f"source {name!r} does not exist")
    return source


@router.patch("/{name}", response_model=SourcePublic, dependencies=[WriterDep])
def update_source(name: str, body: SourceUpdate, session: SessionDep) -> SourcePublic:
    source = crud.get_source(session=session, name=name)
    if source is None:
        raise HTTPException(404, detail=f"source {name!r} does not exist")
    if body.pipeline is not None:
        _validate_pipeline(name, source.language, body.pipeline)
    return crud.update_source(session=session, source=source, source_in=body)
