from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from dmu_service.api.deps import ReaderDep, SessionDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict:
    """Liveness: the process serves requests."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(session: SessionDep) -> dict:
    """Readiness: the database answers and the schema is migrated."""
    try:
        session.execute(text("SELECT 1 FROM mixtures LIMIT 1"))
    except Exception as e:  # any DB failure means not ready; the reason goes to the caller
        raise HTTPException(503, detail=f"database not ready: {type(e).__name__}: {e}".splitlines()[0]) from e
    return {"status": "ready"}


@router.get("/metrics", include_in_schema=False, dependencies=[ReaderDep])
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
