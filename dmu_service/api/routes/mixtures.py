"""Mixtures: named, versioned source weights. The contract is dmu_service/schemas/mixtures.py."""

from __future__ import annotations

import json
import time
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Path, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from dmu_service.api.deps import (
    MixtureWriterDep,
    NotifierDep,
    ReaderDep,
    SessionDep,
    SettingsDep,
)
from dmu_service.api.notify import MixtureNotifier
from dmu_service.crud import mixtures as crud
from dmu_service.crud.sources import source_names
from dmu_service.models import MixtureVersion
from heurimentor.contracts.bounds import INT64_MAX
from heurimentor.contracts.mixtures import (
    MIXTURE_NAME_PATTERN,
    MixtureCreate,
    MixturePatch,
    MixtureSummary,
    MixtureUpdate,
    MixtureVersionPublic,
)
from heurimentor.service_kit.auth import AUTH_RESPONSES, check_access
from heurimentor.service_kit.errors import error_responses

router = APIRouter(prefix="/mixtures", tags=["mixtures"], responses=AUTH_RESPONSES)
SSE_HEARTBEAT_S = 15.0
# A name or version no mixture can have is a 422 before any query (NUL, 2**63 reached the database).
MixtureName = Annotated[str, Path(pattern=MIXTURE_NAME_PATTERN, description="mixture name")]
VersionNumber = Annotated[int, Path(ge=1, le=INT64_MAX, description="mixture version")]
# A write without If-Match must not fail because another writer went first: on PostgreSQL the row
# lock queues writers; on SQLite a racing writer loses the version number and retries, for up to
# this long (then 503, never 412).
UNCONDITIONAL_RETRY_S = 30.0


def parse_etag(value: str | None, header: str) -> int | None:
    """``"7"`` / ``W/"7"`` / ``7`` -> 7; ``*`` or absent -> None; anything else is a 400."""
    if value is None or value.strip() == "*":
        return None
    tag = value.split(",")[0].strip().removeprefix("W/").strip('"')
    try:
        return int(tag)
    except ValueError as e:
        raise HTTPException(400, detail=f"{header} {value!r} is not a mixture version ETag like '\"3\"'") from e


def _respond(request: Request, response: Response, version: MixtureVersion) -> MixtureVersionPublic:
    public = crud.to_public(version)
    response.headers["ETag"] = f'"{public.version}"'
    request.app.state.metrics.observe_mixture(public.name, public.version, public.weights)
    return public


def _not_found(e: crud.MixtureNotFound) -> HTTPException:
    return HTTPException(404, detail=str(e))


@router.post("", status_code=201, response_model=MixtureVersionPublic, dependencies=[MixtureWriterDep], responses=error_responses(409))
def create_mixture(
    body: MixtureCreate, session: SessionDep, notifier: NotifierDep, request: Request, response: Response
) -> MixtureVersionPublic:
    check_access(request, "write", body.name)  # the name is in the body, not the path
    try:
        version = crud.create_mixture(
            session=session,
            name=body.name,
            weights=body.weights,
            author=body.author,
            reason=body.reason,
            known_sources=source_names(session=session),
        )
        session.commit()
    except crud.InvalidWeights as e:
        request.app.state.metrics.rejected_changes.labels(body.name, "invalid_weights").inc()
        raise HTTPException(422, detail=str(e)) from e
    except crud.MixtureExists as e:
        raise HTTPException(409, detail=str(e)) from e
    request.app.state.metrics.mixture_changes.labels(body.name).inc()
    notifier.notify()
    return _respond(request, response, version)


@router.get("", response_model=list[MixtureSummary], dependencies=[ReaderDep])
def list_mixtures(session: SessionDep) -> list[MixtureSummary]:
    return [
        MixtureSummary(name=m.name, current_version=m.current_version, updated_at=m.updated_at) for m in crud.list_mixtures(session=session)
    ]


@router.get("/{name}", response_model=MixtureVersionPublic, dependencies=[ReaderDep], responses=error_responses(404))
def read_mixture(name: MixtureName, session: SessionDep, request: Request, response: Response) -> MixtureVersionPublic:
    try:
        return _respond(request, response, crud.get_version(session=session, name=name))
    except crud.MixtureNotFound as e:
        raise _not_found(e) from e


def _change(
    *,
    name: str,
    body: MixtureUpdate | MixturePatch,
    merge: bool,
    if_match: str | None,
    session: Session,
    notifier: MixtureNotifier,
    request: Request,
    response: Response,
) -> MixtureVersionPublic:
    expected = parse_etag(if_match, "If-Match")
    deadline = time.monotonic() + UNCONDITIONAL_RETRY_S
    while True:
        try:
            version = crud.add_version(
                session=session,
                name=name,
                weights=body.weights,
                author=body.author,
                reason=body.reason,
                known_sources=source_names(session=session),
                if_match=expected,
                merge=merge,
            )
            session.commit()
            break
        except crud.MixtureNotFound as e:
            raise _not_found(e) from e
        except crud.InvalidWeights as e:
            request.app.state.metrics.rejected_changes.labels(name, "invalid_weights").inc()
            raise HTTPException(422, detail=str(e)) from e
        except crud.VersionConflict as e:
            if expected is None and time.monotonic() < deadline:
                continue
            if expected is None:
                raise HTTPException(
                    503, detail=f"mixture {name!r}: too many concurrent writers; retry", headers={"Retry-After": "1"}
                ) from e
            request.app.state.metrics.rejected_changes.labels(name, "precondition_failed").inc()
            raise HTTPException(412, detail=str(e)) from e
    request.app.state.metrics.mixture_changes.labels(name).inc()
    notifier.notify()
    return _respond(request, response, version)


@router.put("/{name}", response_model=MixtureVersionPublic, dependencies=[MixtureWriterDep], responses=error_responses(400, 404, 412, 503))
def replace_mixture(
    name: MixtureName,
    body: MixtureUpdate,
    session: SessionDep,
    notifier: NotifierDep,
    request: Request,
    response: Response,
    if_match: Annotated[str | None, Header()] = None,
) -> MixtureVersionPublic:
    return _change(
        name=name, body=body, merge=False, if_match=if_match, session=session, notifier=notifier, request=request, response=response
    )


@router.patch(
    "/{name}", response_model=MixtureVersionPublic, dependencies=[MixtureWriterDep], responses=error_responses(400, 404, 412, 503)
)
def patch_mixture(
    name: MixtureName,
    body: MixturePatch,
    session: SessionDep,
    notifier: NotifierDep,
    request: Request,
    response: Response,
    if_match: Annotated[str | None, Header()] = None,
) -> MixtureVersionPublic:
    return _change(
        name=name, body=body, merge=True, if_match=if_match, session=session, notifier=notifier, request=request, response=response
    )


@router.get("/{name}/versions", response_model=list[MixtureVersionPublic], dependencies=[ReaderDep], responses=error_responses(404))
def list_versions(name: MixtureName, session: SessionDep) -> list[MixtureVersionPublic]:
    try:
        return [crud.to_public(v) for v in crud.list_versions(session=session, name=name)]
    except crud.MixtureNotFound as e:
        raise _not_found(e) from e


@router.get("/{name}/versions/{version}", response_model=MixtureVersionPublic, dependencies=[ReaderDep], responses=error_responses(404))
def read_version(
    name: MixtureName, version: VersionNumber, session: SessionDep, request: Request, response: Response
) -> MixtureVersionPublic:
    try:
        public = crud.to_public(crud.get_version(session=session, name=name, version=version))
    except crud.MixtureNotFound as e:
        raise _not_found(e) from e
    response.headers["ETag"] = f'"{public.version}"'
    return public


def _version_reader(request: Request, name: str):
    factory = request.app.state.session_factory

    def read() -> int:
        with factory() as session:
            return crud.current_version_number(session=session, name=name)

    async def read_async() -> int:
        return await run_in_threadpool(read)

    return read_async


def _load_public(request: Request, name: str) -> MixtureVersionPublic:
    with request.app.state.session_factory() as session:
        return crud.to_public(crud.get_version(session=session, name=name))


@router.get(
    "/{name}/current",
    response_model=MixtureVersionPublic,
    dependencies=[ReaderDep],
    responses={304: {"description": "unchanged since If-None-Match (after waiting up to `wait` seconds)"}, **error_responses(400, 404)},
)
async def read_current(
    name: MixtureName,
    request: Request,
    settings: SettingsDep,
    notifier: NotifierDep,
    wait: Annotated[float, Query(ge=0, description="hold the request open up to this many seconds")] = 0.0,
    if_none_match: Annotated[str | None, Header()] = None,
):
    """The current version; cheap (one indexed read). Long-poll with If-None-Match + ``wait``."""
    known = parse_etag(if_none_match, "If-None-Match")
    read_version = _version_reader(request, name)
    try:
        if known is None:
            current = await read_version()
        else:
            current = await notifier.wait_for_newer(known, min(wait, settings.max_wait_s), read_version)
        if current == known:
            return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": f'"{current}"'})
        public = await run_in_threadpool(_load_public, request, name)
    except crud.MixtureNotFound as e:
        raise _not_found(e) from e
    return Response(public.model_dump_json(), media_type="application/json", headers={"ETag": f'"{public.version}"'})


@router.get(
    "/{name}/events",
    dependencies=[ReaderDep],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "one event per new version"}, **error_responses(400, 404)},
)
async def stream_events(
    name: MixtureName,
    request: Request,
    notifier: NotifierDep,
    last_event_id: Annotated[str | None, Header()] = None,
):
    """Server-sent events: one ``data:`` line (a MixtureVersionPublic) per new version, ``id:`` = version."""
    read_version = _version_reader(request, name)
    try:
        await read_version()
    except crud.MixtureNotFound as e:
        raise _not_found(e) from e
    resume_after = parse_etag(last_event_id, "Last-Event-ID")

    async def events():
        known = resume_after if resume_after is not None else -1
        while not await request.is_disconnected():
            current = await notifier.wait_for_newer(known, SSE_HEARTBEAT_S, read_version)
            if current == known:
                yield ": keep-alive\n\n"
                continue
            public = await run_in_threadpool(_load_public, request, name)
            known = public.version
            yield f"id: {public.version}\nevent: version\ndata: {json.dumps(public.model_dump(mode='json'))}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
