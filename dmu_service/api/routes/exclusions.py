"""A run's exclusion log: which documents went, and why (paged, filtered by rule or document)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query

from dmu_service.api.deps import ReaderDep, SessionDep
from dmu_service.crud import exclusions as crud
from dmu_service.crud.sources import get_run
from dmu_service.models import Exclusion, Run
from dmu_service.schemas.exclusions import ExclusionPage, ExclusionPublic
from heurimentor.contracts.bounds import INT32_MAX
from heurimentor.service_kit.auth import AUTH_RESPONSES
from heurimentor.service_kit.errors import error_responses

router = APIRouter(prefix="/runs", tags=["runs"], responses=AUTH_RESPONSES)
INT64_MAX = (1 << 63) - 1


def exclusion_public(run: Run, row: Exclusion) -> ExclusionPublic:
    file = run.inputs[row.file_index] if row.file_index < len(run.inputs) else f"#{row.file_index}"
    return ExclusionPublic(
        id=row.id,
        document=crud.document_id(run.id, row.file_index, row.record),
        file=file,
        record=row.record,
        rule=row.rule,
        value=row.value,
        duplicate_of=row.duplicate_of,
        language=row.language,
    )


@router.get("/{run_id}/exclusions", response_model=ExclusionPage, dependencies=[ReaderDep], responses=error_responses(404))
def read_exclusions(
    run_id: Annotated[int, Path(ge=1, le=INT32_MAX, description="run id")],
    session: SessionDep,
    rule: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9_]+$", description="only this rule")] = None,
    document: Annotated[str | None, Query(alias="id", max_length=64, description="only this document (run:file:record)")] = None,
    after: Annotated[int, Query(ge=0, le=INT64_MAX, description="next_after of the previous page")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ExclusionPage:
    run = get_run(session=session, run_id=run_id)
    if run is None:
        raise HTTPException(404, detail=f"run {run_id} does not exist")
    position = None
    if document is not None:
        try:
            doc_run, file_index, record = crud.parse_document_id(document)
        except ValueError as e:
            raise HTTPException(422, detail=str(e)) from e
        if doc_run != run_id:
            raise HTTPException(422, detail=f"document {document} belongs to run {doc_run}, not run {run_id}")
        position = (file_index, record)
    rows = crud.list_exclusions(session=session, run_id=run_id, rule=rule, position=position, after=after, limit=limit)
    return ExclusionPage(items=[exclusion_public(run, r) for r in rows], next_after=rows[-1].id if len(rows) == limit else None)
