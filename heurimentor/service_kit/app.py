"""What every service app gets: the request guard, the token policy on ``app.state`` and a 422 that always renders."""

from __future__ import annotations

from fastapi import FastAPI

from heurimentor.service_kit.errors import install_error_handling
from heurimentor.service_kit.guard import RequestGuard
from heurimentor.service_kit.settings import ServiceSettings


def install_security(app: FastAPI, settings: ServiceSettings) -> None:
    """Add the guard as the outermost middleware (added last: Starlette wraps in reverse order),
    inside it the error handling of ``errors`` (a 422 that always renders, no bare 500)."""
    install_error_handling(app)
    policy = settings.token_policy()
    app.state.token_policy = policy
    app.add_middleware(RequestGuard, policy=policy, max_request_bytes=settings.max_request_bytes)
