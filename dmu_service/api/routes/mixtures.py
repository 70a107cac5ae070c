"""Mixtures: named, versioned source weights. The contract is dmu_service/schemas/mixtures.py."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from dmu_service.api.deps import (
    NotifierDep,
    ReaderDep,
    SessionDep,
    SettingsDep,
    WriterDep,
)
from dmu_service.api.notify import MixtureNotifier
from dmu_service.crud import mixtures as crud
from dmu_service.crud.sources import source_names
from dmu_service.models import MixtureVersion
from heurimentor.contracts.mixtures import (
    MixtureCreate,
    MixturePatch,
    MixtureSummary,
    MixtureUpdate,
    MixtureVersionPublic,
)

router = APIRouter(prefix="/mixtures", tags=["mixtures"])
SSE_HEARTBEAT_S = 15.0
# A write without If-Match retries this often when a concurrent writer takes the next version number.
UNCONDITIONAL_RETRIES = 5


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


@router.post("", status_code=201, response_model=MixtureVersionPublic, dependencies=[WriterDep])
def create_mixture(
    body: MixtureCreate, session: SessionDep, notifier: NotifierDep, request: Request, response: Response
) -> MixtureVersionPublic:
    try:
        version = crud.create_mixture(
            session=session, name=body.name, weights=body.weights, author=body.author, reason=body.reason,
            known_sources=source_names(session=session),
        )
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
        MixtureSummary(name=m.name, current_version=m.current_version, updated_at=m.updated_at)
        for m in crud.list_mixtures(session=session)
    ]


@router.get("/{name}", response_model=MixtureVersionPublic, dependencies=[ReaderDep])
def read_mixture(name: str, session: SessionDep, request: Request, response: Response) -> MixtureVersionPublic:
    try:
        return _respond(request, response, crud.get_version(session=session, name=name))
    except crud.MixtureNotFound as e:
        raise _not_found(e) from e


def _change(
    *, name: str, body: MixtureUpdate | MixturePatch, merge: bool, if_match: str | None,
    session: Session, notifier: MixtureNotifier, request: Request, response: Response,
) -> MixtureVersionPublic:
    expected = parse_etag(if_match, "If-Match")
    attempts = 1 if expected is not None else UNCONDITIONAL_RETRIES
    for attempt in range(attempts):
        try:
            version = crud.add_version(
                session=session, name=name, weights=body.weights, author=body.author, reason=body.reason,
                known_sources=source_names(session=session), if_match=expected, merge=merge,
            )
            break
        except crud.MixtureNotFound as e:
            raise _not_found(e) from e
        except crud.InvalidWeights as e:
            request.app.state.metrics.rejected_changes.labels(name, "invalid_weights").inc()
            raise HTTPException(422, detail=str(e)) from e
        except crud.VersionConflict as e:
            if attempt + 1 < attempts:
                continue
            request.app.state.metrics.rejected_changes.labels(name, "precondition_failed").inc()
            raise HTTPException(412, detail=str(e)) from e
    request.app.state.metrics.mixture_changes.labels(name).inc()
    notifier.notify()
    return _respond(request, response, version)


@router.put("/{name}", response_model=MixtureVersionPublic, dependencies=[WriterDep])
def replace_mixture(
    name: str, body: MixtureUpdate, session: SessionDep, notifier: NotifierDep, request: Request, response: Response,
    if_match: Annotated[str | None, Header()] = None,
) -> MixtureVersionPublic:
    return _change(name=name, body=body, merge=False, if_match=if_match, session=session, notifier=notifier,
                   request=request, response=response)


@router.patch("/{name}", response_model=MixtureVersionPublic, dependencies=[WriterDep])
def patch_mixture(
    name: str, body: MixturePatch, session: SessionDep, notifier: NotifierDep, request: Request, response: Response,
    if_match: Annotated[str | None, Header()] = None,
) -> MixtureVersionPublic:
    return _change(name=name, body=body, merge=True, if_match=if_match, session=session, notifier=notifier,
                   request=request, response=response)


@router.get("/{name}/versions", response_model=list[MixtureVersionPublic], dependencies=[ReaderDep])
def list_versions(name: str, session: SessionDep) -> list[MixtureVersionPublic]:
    try:
        return [crud.to_public(v) for v in crud.list_versions(session=session, name=name)]
    except crud.MixtureNotFound as e:
        raise _not_found(e) from e


@router.get("/{name}/versions/{version}", response_model=MixtureVersionPublic, dependencies=[ReaderDep])
def read_version(name: str, version: int, session: SessionDep, request: Request, response: Response) -> MixtureVersionPublic:
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
    "/{name}/current", response_model=MixtureVersionPublic, dependencies=[ReaderDep],
    responses={304: {"description": "unchanged since If-None-Match (after waiting up to `wait` seconds)"}},
)
async def read_current(
    name: str, request: Request, settings: SettingsDep, notifier: NotifierDep,
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


@router.get("/{name}/events", dependencies=[ReaderDep], response_class=StreamingResponse)
async def stream_events(
    name: str, request: Request, notifier: NotifierDep,
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
