"""FastAPI dependencies as Annotated aliases: ``def route(session: SessionDep, ...)``.

Access (docs/security.md): ``ReaderDep`` on reads; ``MixtureWriterDep`` on mixture changes (a token
limited to some mixtures may change those only); ``AdminDep`` on source registration.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from dmu_service.api.notify import MixtureNotifier
from dmu_service.config import Settings
from heurimentor.service_kit.auth import require


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.session_factory() as session:
        yield session


def get_notifier(request: Request) -> MixtureNotifier:
    return request.app.state.notifier


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
NotifierDep = Annotated[MixtureNotifier, Depends(get_notifier)]

ReaderDep = require("read")
MixtureWriterDep = require("write", resource="name")
AdminDep = require("admin")
