from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus exposition: job health, per-source loss, events, ingest counters")
async def metrics(request: Request) -> Response:
    body = await run_in_threadpool(request.app.state.exposition.render)
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)
