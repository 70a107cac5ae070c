from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from tsm_service.api.deps import ReaderDep

router = APIRouter(tags=["metrics"], dependencies=[ReaderDep])  # weights and losses: a read like any other


@router.get(
    "/metrics",
    summary="Prometheus exposition: job health, per-source loss, events, ingest counters",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "the exposition"}},
)
async def metrics(request: Request) -> Response:
    body = await run_in_threadpool(request.app.state.exposition.render)
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)
