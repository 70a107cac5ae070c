"""Dependencies of the routers, as Annotated aliases (``session: SessionDep``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request
from sqlalchemy.orm import Session

from heurimentor.contracts.jobs import JOB_NAME_PATTERN
from heurimentor.service_kit.auth import require
from tsm_service.config import Settings
from tsm_service.crud.jobs import get_job
from tsm_service.models import Job


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.session_factory() as session:
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

# Access (docs/security.md): reads need the read scope; a job's writes need the write scope on that
# job (a trainer's token may be limited to its own job).
ReaderDep = require("read")
JobWriterDep = require("write", resource="job")
