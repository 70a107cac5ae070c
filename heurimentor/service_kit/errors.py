"""How both services answer when a request cannot be served: a 4xx with a reason, never a 500
for bad input, and a documented status for every answer a route gives.

``install_error_handling(app)`` adds:
- a 422 handler that can render any rejected input (lone surrogates, bytes that are not UTF-8,
  NaN) — the stock one crashed on those and turned a 422 into a 500;
- one shape for every 422: ``detail`` is a list of ``{loc, msg, type}`` (FastAPI's
  ``HTTPValidationError``), also when a route raises it with a sentence;
- the database's refusals as answers: a value it cannot store (``DataError``) is a 422, an
  unreachable database (``OperationalError``) a 503 with ``Retry-After``;
- a last-resort catcher: an unexpected exception is logged with its traceback and answered with a
  500 JSON body while the connection stays usable (Starlette re-raised it, so uvicorn closed the
  keep-alive connection without a word).
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

# An echoed input longer than this is cut: a 16 MB body must not come back in its 422.
MAX_ECHOED_CHARS = 500
MAX_ECHOED_ITEMS = 20
DATABASE_RETRY_AFTER_S = 5


class ErrorDetail(BaseModel):
    """The body of every 4xx except 422 (and of 5xx): what went wrong, naming the object."""

    detail: str


_DESCRIPTIONS = {
    304: "not modified since the ETag given",
    400: "malformed header or query (the reason says which)",
    401: "missing or invalid bearer token",
    403: "the token's scope does not allow this",
    404: "no such object",
    409: "conflicts with the object's current state",
    412: "If-Match names a version that is no longer current",
    413: "request body too large",
    415: "the body must be application/json",
    503: "the database is unavailable; retry later",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route that can answer ``statuses`` (422 is documented by FastAPI itself)."""
    return {
        status: ({"description": _DESCRIPTIONS[status]} if status == 304 else {"model": ErrorDetail, "description": _DESCRIPTIONS[status]})
        for status in statuses
    }


def unprocessable(message: str, *loc: str | int, kind: str = "value_error") -> HTTPException:
    """A 422 raised by a route, shaped like the validation errors: ``detail=[{loc, msg, type}]``."""
    return HTTPException(422, detail=[{"loc": list(loc), "msg": message, "type": kind}])


def json_body(model: type[BaseModel], *, description: str = "") -> dict[str, Any]:
    """``openapi_extra`` documenting ``model`` as the JSON body of a route that reads the raw body
    itself (to bound it, or to parse it in one pass). The nested models go to ``components`` when
    the document is built (``install_error_handling`` wraps ``app.openapi``)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions = schema.pop("$defs", {})
    definitions[model.__name__] = schema
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        },
        "x-components-schemas": definitions,
    }


def _hoist_body_components(app: FastAPI) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        components = document.setdefault("components", {}).setdefault("schemas", {})
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                if isinstance(operation, dict):
                    components.update(operation.pop("x-components-schemas", {}))
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _printable(value: Any) -> Any:
    """``value`` made safe for strict JSON in UTF-8: bytes decoded, surrogates escaped, NaN as text."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    if isinstance(value, str):
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value if len(value) <= MAX_ECHOED_CHARS else value[:MAX_ECHOED_CHARS] + "…"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(_printable(k)): _printable(v) for k, v in list(value.items())[:MAX_ECHOED_ITEMS]}
    if isinstance(value, (list, tuple)):
        return [_printable(v) for v in value[:MAX_ECHOED_ITEMS]]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return _printable(str(value))


def _error_list(errors: Any) -> list[dict[str, Any]]:
    if isinstance(errors, list):
        return [
            {
                "loc": list(e.get("loc", ())),
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "value_error")),
                **({"input": e["input"]} if "input" in e else {}),
                **({"ctx": e["ctx"]} if "ctx" in e else {}),
            }
            if isinstance(e, dict)
            else {"loc": [], "msg": str(e), "type": "value_error"}
            for e in errors
        ]
    return [{"loc": [], "msg": str(errors), "type": "value_error"}]


def _unprocessable_response(errors: Any) -> Response:
    body = json.dumps({"detail": _printable(_error_list(errors))}, ensure_ascii=False, allow_nan=False)
    return Response(body.encode("utf-8"), status_code=422, media_type="application/json")


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    return _unprocessable_response(exc.errors())


# FastAPI's answer to a body it cannot decode (bytes that are not UTF-8); a body that is not JSON is
# a 422 there, so this one is too.
_FASTAPI_UNPARSABLE_BODY = "There was an error parsing the body"


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code == 422:
        return _unprocessable_response(exc.detail)
    if exc.status_code == 400 and exc.detail == _FASTAPI_UNPARSABLE_BODY:
        return _unprocessable_response([{"loc": ["body"], "msg": "the body is not JSON in UTF-8", "type": "json_invalid"}])
    return await http_exception_handler(request, exc)


async def _data_error(request: Request, exc: DataError) -> JSONResponse:
    reason = str(exc.orig).splitlines()[0] if exc.orig is not None else type(exc).__name__
    log.warning("the database refused a value", extra={"path": request.url.path, "reason": reason})
    return _unprocessable_response(
        [{"loc": [], "msg": f"the database cannot store a value of this request: {reason}", "type": "value_error"}]
    )


async def _database_unavailable(request: Request, exc: OperationalError) -> JSONResponse:
    log.error("database unavailable", extra={"path": request.url.path, "error": str(exc.orig).splitlines()[0]})
    return JSONResponse(
        status_code=503,
        content={"detail": "the database is unavailable; retry later"},
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)},
    )


class InternalErrorMiddleware:
    """Answers an unhandled exception with a logged 500 instead of letting it reach the server
    (which then drops the connection). Mid-response there is nothing to answer: it re-raises."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception:
            log.exception("unhandled error", extra={"method": scope.get("method"), "path": scope.get("path")})
            if started:
                raise
            response = JSONResponse(status_code=500, content={"detail": "internal error; the service log has the traceback"})
            await response(scope, receive, send)


def install_error_handling(app: FastAPI) -> None:
    """Call once in ``create_app``, before the app's own ``@app.middleware`` (so those see the 500s)."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_middleware(InternalErrorMiddleware)
    _hoist_body_components(app)
