"""FastAPI dependencies as Annotated aliases: ``def route(session: SessionDep, ...)``."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from dmu_service.api.notify import MixtureNotifier
from dmu_service.config import Settings

_bearer = HTTPBearer(auto_error=False)


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


def _check_token(settings: Settings, credentials: HTTPAuthorizationCredentials | None) -> None:
    expected = settings.auth_token.get_secret_value().encode()
    if credentials is None or not secrets.compare_digest(credentials.credentials.encode(), expected):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )


def require_writer(settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    _check_token(settings, credentials)


def require_reader(settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    if settings.reads_require_auth:
        _check_token(settings, credentials)


WriterDep = Depends(require_writer)
ReaderDep = Depends(require_reader)
