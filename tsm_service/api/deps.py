"""Dependencies of the routers, as Annotated aliases (``session: SessionDep``)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from tsm_service.config import Settings
from tsm_service.crud.jobs import get_job
from tsm_service.models import Job
from heurimentor.contracts.jobs import JOB_NAME_PATTERN


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessionmaker() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
JobName = Annotated[str, Path(pattern=JOB_NAME_PATTERN, description="training job name (the Aquila2TrainingJob's)")]


def get_existing_job(session: SessionDep, job: JobName) -> Job:
    found = get_job(session, name=job)
    if found is None:
        raise HTTPException(status_code=404, detail=f"job {job!r} has sent no metrics to this TSM")
    return found


JobDep = Annotated[Job, Depends(get_existing_job)]

_bearer = HTTPBearer(auto_error=False)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _check_token(settings: Settings, credentials: HTTPAuthorizationCredentials | None) -> None:
    expected = settings.auth_token.get_secret_value().encode() if settings.auth_token else None
    if expected is None:
        return
    if credentials is None or not secrets.compare_digest(credentials.credentials.encode(), expected):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="missing or invalid bearer token",
                            headers={"WWW-Authenticate": "Bearer"})


def require_writer(settings: SettingsDep, credentials: BearerDep) -> None:
    _check_token(settings, credentials)


def require_reader(settings: SettingsDep, credentials: BearerDep) -> None:
    if settings.reads_require_auth:
        _check_token(settings, credentials)


WriterDep = Depends(require_writer)
ReaderDep = Depends(require_reader)
