from __future__ import annotations

from fastapi import APIRouter, HTTPException
from sqlalchemy import inspect, text

from tsm_service.api.deps import SessionDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the database answers and the schema is migrated")
def readyz(session: SessionDep) -> dict[str, str]:
    try:
        connection = session.connection()
        migrated = inspect(connection).has_table("tsm_alembic_version")
        revision = connection.execute(text("SELECT version_num FROM tsm_alembic_version")).scalar() if migrated else None
    except Exception as e:  # noqa: BLE001 - any database failure means not ready
        raise HTTPException(status_code=503, detail=f"database unreachable: {type(e).__name__}: {e}") from e
    if revision is None:
        raise HTTPException(status_code=503, detail="database has no TSM schema; run `heurimentor tsm migrate`")
    return {"status": "ready", "schema_revision": revision}
