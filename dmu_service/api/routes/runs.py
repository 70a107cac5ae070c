"""Ingestion runs (started by ``heurimentor dmu ingest``; read here for progress and per-stage counts)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from dmu_service.api.deps import ReaderDep, SessionDep
from dmu_service.crud import sources as crud
from dmu_service.models import Run, RunStatus
from dmu_service.schemas.sources import RunPublic
from heurimentor.contracts.bounds import INT32_MAX
from heurimentor.contracts.mixtures import MIXTURE_NAME_PATTERN
from heurimentor.service_kit.auth import AUTH_RESPONSES
from heurimentor.service_kit.errors import error_responses

router = APIRouter(prefix="/runs", tags=["runs"], responses=AUTH_RESPONSES)


def run_public(run: Run) -> RunPublic:
    checkpoint = run.checkpoint or {}
    progress = {
        "files_total": len(run.inputs),
        "files_done": checkpoint.get("file_index", 0),
        "records_into_current_file": checkpoint.get("record", 0),
    }
    return RunPublic(
        id=run.id,
        source=run.source.name,
        status=run.status,
        backend=run.backend,
        inputs=run.inputs,
        tokenizer_id=run.tokenizer_id,
        counts=run.counts,
        progress=progress,
        error=run.error,
        created_at=run.created_at,
        updated_at=run.updated_at,
        finished_at=run.finished_at,
    )


@router.get("", response_model=list[RunPublic], dependencies=[ReaderDep])
def list_runs(
    session: SessionDep,
    source: Annotated[str | None, Query(pattern=MIXTURE_NAME_PATTERN)] = None,
    status: RunStatus | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
) -> list[RunPublic]:
    return [run_public(r) for r in crud.list_runs(session=session, source=source, status=status, limit=limit)]


@router.get("/{run_id}", response_model=RunPublic, dependencies=[ReaderDep], responses=error_responses(404))
def read_run(run_id: Annotated[int, Path(ge=1, le=INT32_MAX, description="run id")], session: SessionDep) -> RunPublic:
    run = crud.get_run(session=session, run_id=run_id)
    if run is None:
        raise HTTPException(404, detail=f"run {run_id} does not exist")
    return run_public(run)
