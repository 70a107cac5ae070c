"""ASGI middleware: who is calling, and refuse what must not be read.

Runs before routing and before any body is parsed, so an anonymous 31 MB POST costs a header parse
(401), not 31 MB of memory and a JSON decode (422). Order of checks:

1. open paths (``/healthz``, ``/readyz``, the OpenAPI document) pass;
2. the bearer token is resolved to a ``Principal`` (``scope["state"]["principal"]``, read by
   ``heurimentor.service_kit.auth``);
3. a mutating request without a valid token, or a read without one when reads need a token: 401;
4. a declared ``Content-Length`` over the limit: 413; a chunked body that grows past it: 413 once it
   does (the body is counted as the app reads it, never buffered here).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

from heurimentor.service_kit.security import TokenPolicy, bearer_token

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


class BodyTooLarge(HTTPException):
    """The body grew past the limit while the app read it."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=f"request body exceeds {limit} bytes")


async def send_json(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    def __init__(self, app: ASGIApp, *, policy: TokenPolicy, max_request_bytes: int, open_paths: frozenset[str] = OPEN_PATHS) -> None:
        self.app = app
        self.policy = policy
        self.max_request_bytes = max_request_bytes
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        principal = self.policy.authenticate(bearer_token(headers.get("authorization")))
        scope.setdefault("state", {})["principal"] = principal
        method = scope["method"].upper()
        if principal is None and scope["path"] not in self.open_paths:
            needed = self.policy.reads_need_token if method in READ_METHODS else self.policy.writes_need_token
            if needed:
                await send_json(send, 401, "missing or invalid bearer token", [(b"www-authenticate", b"Bearer")])
                return
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_request_bytes:
            await send_json(send, 413, f"request body is {declared} bytes; at most {self.max_request_bytes} bytes")
            return
        await self._call_counted(scope, receive, send)

    async def _call_counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Frameworks wrap an error raised by receive() (FastAPI answers 400 "error parsing the body",
        # a BaseHTTPMiddleware adds an ExceptionGroup), so the overflow is remembered here and the
        # app's answer to it, whatever it is, is replaced by the 413.
        seen = 0
        overflow: BodyTooLarge | None = None
        started = replaced = False
        limit = self.max_request_bytes

        async def counted_receive() -> Message:
            nonlocal seen, overflow
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    overflow = BodyTooLarge(limit)
                    raise overflow
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started, replaced
            if message["type"] == "http.response.start":
                started = True
                if overflow is not None:
                    replaced = True
                    await send_json(send, 413, overflow.detail)
                    return
            if not replaced:
                await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if overflow is None or started:
                raise
            await send_json(send, 413, overflow.detail)
