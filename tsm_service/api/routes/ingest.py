from __future__ import annotations

import logging
import time

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from heurimentor.contracts.metrics import MAX_POINTS_PER_BATCH, IngestResult, MetricBatch
from heurimentor.service_kit.auth import AUTH_RESPONSES
from heurimentor.service_kit.errors import error_responses, json_body
from tsm_service.api.deps import JobName, JobWriterDep, SessionDep, SettingsDep
from tsm_service.crud.ingest import ingest_batch

router = APIRouter(tags=["ingest"])
log = logging.getLogger(__name__)


@router.post(
    "/v1/jobs/{job}/metrics",
    response_model=IngestResult,
    dependencies=[JobWriterDep],
    responses={**AUTH_RESPONSES, **error_responses(413)},
    # The body is parsed here in one pass (model_validate_json), so FastAPI does not see it: document it.
    openapi_extra=json_body(MetricBatch, description="what one rank measured since its last batch"),
    summary="Ingest a batch of metric points from a trainer rank (idempotent by batch_id)",
)
async def post_metrics(job: JobName, request: Request, session: SessionDep, settings: SettingsDep) -> IngestResult:
    body = await request.body()  # at most max_request_bytes: the request guard answers 413 past that
    try:
        batch = MetricBatch.model_validate_json(body)
    except ValidationError as e:
        for error in e.errors():
            if error["type"] == "too_long" and error["loc"][0] in ("points", "evals") and len(error["loc"]) == 1:
                raise HTTPException(
                    status_code=413,
                    detail=f"metric batch for job {job!r} has too many {error['loc'][0]}; at most {MAX_POINTS_PER_BATCH} per batch",
                ) from e
        raise RequestValidationError(e.errors(include_url=False), body=body[:1000]) from e

    def store() -> IngestResult:
        result = ingest_batch(
            session, job_name=job, batch=batch, now=time.time(), rollback_margin_steps=settings.detectors.spike.rollback_margin_steps
        )
        session.commit()
        return result

    result = await run_in_threadpool(store)
    request.app.state.exposition.count_ingest(result)
    if result.non_finite and not result.duplicate:
        log.warning(
            "non-finite metrics flagged as divergence", extra={"job": job, "batch_id": batch.batch_id, "non_finite": result.non_finite}
        )
    return result
