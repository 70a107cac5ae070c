"""The authorization dependency: ``dependencies=[require("write", resource="job")]`` on a route.

Authentication happened in ``RequestGuard`` (before the body was read); this checks the scope and,
with ``resource``, that the token may touch the job or mixture named by that path parameter.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPBearer

from heurimentor.service_kit.security import Principal, Scope, TokenPolicy

# Declares the scheme in the OpenAPI document; the guard has already checked the header.
_bearer_scheme = HTTPBearer(auto_error=False, description="a token of the service's `auth_token` or `tokens`")


def principal_of(request: Request) -> Principal | None:
    return request.scope.get("state", {}).get("principal")


def check_access(request: Request, scope: Scope, resource: str | None = None) -> None:
    """Raise 401/403 unless the request's token has ``scope`` on ``resource``."""
    policy: TokenPolicy = request.app.state.token_policy
    principal = principal_of(request)
    if principal is None:
        needed = policy.reads_need_token if scope == "read" else policy.writes_need_token
        if needed:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, detail="missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
            )
        return
    if not principal.allows(scope, resource):
        target = f" on {resource!r}" if resource is not None else ""
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"token {principal.name!r} (scope {principal.scope}) may not {scope}{target}")


def require(scope: Scope, *, resource: str | None = None) -> Any:
    """A route dependency; ``resource`` names the path parameter holding the job or mixture name."""

    def dependency(request: Request, _: Any = Depends(_bearer_scheme)) -> None:
        check_access(request, scope, request.path_params.get(resource) if resource else None)

    return Depends(dependency)


AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid bearer token"},
    403: {"description": "the token's scope or resources do not cover this request"},
    413: {"description": "request body over max_request_bytes"},
}
