"""Mixture REST contract and its client (the DMU serves it; the trainer polls it and the TSM writes to it).

Endpoints (all under the DMU's base URL):
    POST  /mixtures                        MixtureCreate            -> 201 MixtureVersionPublic
    GET   /mixtures                                                  -> list[MixtureSummary]
    GET   /mixtures/{name}                                           -> MixtureVersionPublic (current)
    PUT   /mixtures/{name}                 MixtureUpdate (all weights)       -> MixtureVersionPublic
    PATCH /mixtures/{name}                 MixturePatch  (some weights)      -> MixtureVersionPublic
    GET   /mixtures/{name}/versions                                  -> list[MixtureVersionPublic]
    GET   /mixtures/{name}/versions/{v}                              -> MixtureVersionPublic
    GET   /mixtures/{name}/current[?wait=SECONDS]                    -> MixtureVersionPublic
    GET   /mixtures/{name}/events          server-sent events, one ``data: MixtureVersionPublic`` per version

Every response that carries a version sets ``ETag: "<version>"``. ``GET .../current`` honours
``If-None-Match`` (304 when unchanged); with ``wait`` it holds the request open until a newer
version exists or ``wait`` seconds pass (then 304). PUT and PATCH honour ``If-Match`` (412 when
the current version differs), so a human edit and a TSM update never silently overwrite each
other. Mutations need ``Authorization: Bearer <token>``. Invalid weights (negative, NaN, all zero,
a sum too large for a float, unknown source) are 422 with the reason, and no version is created.
Weights are stored as given and served normalised to sum 1 in ``weights``. Names, authors and
reasons refuse NUL and lone surrogates; versions are 64-bit (``heurimentor.contracts.bounds``).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import httpx
from pydantic import BaseModel, Field, field_validator

from heurimentor.contracts.bounds import Version, bounded_text

MIXTURE_NAME_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"


SourceName = bounded_text(63, min_length=1)
Author = bounded_text(200)
Reason = bounded_text(4000)
MAX_SOURCES_PER_MIXTURE = 1000


def check_weights(weights: dict[str, float], *, allow_zero_total: bool = False) -> dict[str, float]:
    for source, weight in weights.items():
        if not isinstance(weight, (int, float)) or math.isnan(weight) or math.isinf(weight):
            raise ValueError(f"weight of source {source!r} is {weight!r}; weights must be finite numbers")
        if weight < 0:
            raise ValueError(f"weight of source {source!r} is {weight}; weights must be >= 0")
    total = sum(weights.values())
    if not math.isfinite(total):
        # Normalising by an infinite sum would serve every weight as 0.0: the all-zero mixture
        # this contract refuses, which a trainer ignores, so the change would silently never apply.
        raise ValueError(f"weights sum to {total}, past the largest float; scale them down (only their ratios matter)")
    if not allow_zero_total and total <= 0:
        raise ValueError("weights sum to 0; at least one source needs a positive weight")
    return weights


Weights = dict[SourceName, float]


class MixtureChange(BaseModel):
    author: Author = Field(default="anonymous", description="who made the change")
    reason: Reason = Field(default="", description="why (shown in the history)")


class MixtureCreate(MixtureChange):
    name: str = Field(pattern=MIXTURE_NAME_PATTERN)
    weights: Weights = Field(min_length=1, max_length=MAX_SOURCES_PER_MIXTURE)

    _check = field_validator("weights")(check_weights)


class MixtureUpdate(MixtureChange):
    """PUT: the full new set of weights."""

    weights: Weights = Field(min_length=1, max_length=MAX_SOURCES_PER_MIXTURE)

    _check = field_validator("weights")(check_weights)


class MixturePatch(MixtureChange):
    """PATCH: weights for some sources; the others keep theirs. A weight of 0 drops a source."""

    weights: Weights = Field(min_length=1, max_length=MAX_SOURCES_PER_MIXTURE)

    @field_validator("weights")
    @classmethod
    def _check(cls, weights: dict[str, float]) -> dict[str, float]:
        return check_weights(weights, allow_zero_total=True)


class MixtureVersionPublic(BaseModel):
    name: str
    version: Version
    weights: dict[str, float] = Field(description="normalised to sum to 1")
    raw_weights: dict[str, float] = Field(description="as given by the author")
    author: str
    reason: str
    created_at: datetime


class MixtureSummary(BaseModel):
    name: str
    current_version: Version
    updated_at: datetime


# The client: one per caller (the trainer's data loader, the TSM's mixer, the CLI). Every failure of a
# call is one exception type, MixtureRequestError (MixtureConflict is the 412 case of it).
class MixtureRequestError(RuntimeError):
    """The DMU refused a request (4xx), failed (5xx), could not be reached or answered something that
    is not a mixture; ``status`` is the HTTP status, None when there was no answer."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


class MixtureConflict(MixtureRequestError):
    """The mixture changed since the version named in If-Match (HTTP 412)."""


class MixtureClient:
    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 10.0):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MixtureClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _send(self, what: str, method: str, path: str, *, expected: tuple[int, ...] = (), **kwargs) -> httpx.Response:
        """The response when it succeeded or its status is in ``expected``; otherwise MixtureRequestError."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise MixtureRequestError(f"{what}: DMU at {self._http.base_url} unreachable: {type(e).__name__}: {e}") from e
        if response.is_success or response.status_code in expected:
            return response
        try:
            detail = response.json().get("detail", response.text)
        except (ValueError, AttributeError):
            detail = response.text
        error = MixtureConflict if response.status_code == 412 else MixtureRequestError
        raise error(f"{what}: HTTP {response.status_code}: {detail}", status=response.status_code)

    @staticmethod
    def _version(what: str, payload: Any) -> MixtureVersionPublic:
        try:  # a JSON decode error and a pydantic ValidationError are both ValueErrors
            return MixtureVersionPublic.model_validate(payload() if callable(payload) else payload)
        except ValueError as e:
            raise MixtureRequestError(f"{what}: the DMU answered something that is not a mixture version: {e}") from e

    def current(self, name: str, *, known_version: int | None = None, wait: float = 0.0) -> MixtureVersionPublic | None:
        """The current version, or None when it is still ``known_version`` (after waiting up to ``wait`` s)."""
        headers = {"If-None-Match": f'"{known_version}"'} if known_version is not None else {}
        params = {"wait": wait} if wait else {}
        what = f"read current mixture {name}"
        response = self._send(
            what, "GET", f"/mixtures/{name}/current", expected=(304,), headers=headers, params=params, timeout=wait + 10.0
        )
        return None if response.status_code == 304 else self._version(what, response.json)

    def update(
        self, name: str, weights: dict[str, float], *, reason: str, author: str, if_match: int | None = None
    ) -> MixtureVersionPublic:
        headers = {"If-Match": f'"{if_match}"'} if if_match is not None else {}
        what = f"update mixture {name}" + (f" if unchanged since version {if_match}" if if_match is not None else "")
        response = self._send(
            what, "PUT", f"/mixtures/{name}", json={"weights": weights, "reason": reason, "author": author}, headers=headers
        )
        return self._version(what, response.json)

    def create(self, name: str, weights: dict[str, float], *, reason: str, author: str) -> MixtureVersionPublic:
        what = f"create mixture {name}"
        response = self._send(what, "POST", "/mixtures", json={"name": name, "weights": weights, "reason": reason, "author": author})
        return self._version(what, response.json)

    def get(self, name: str) -> MixtureVersionPublic | None:
        """The current version, or None when the mixture does not exist."""
        what = f"read mixture {name}"
        response = self._send(what, "GET", f"/mixtures/{name}", expected=(404,))
        return None if response.status_code == 404 else self._version(what, response.json)

    def versions(self, name: str) -> list[MixtureVersionPublic]:
        what = f"list versions of mixture {name}"
        response = self._send(what, "GET", f"/mixtures/{name}/versions")
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not isinstance(payload, list):
            raise MixtureRequestError(f"{what}: the DMU answered {type(payload).__name__}, not a list")
        return [self._version(what, v) for v in payload]
