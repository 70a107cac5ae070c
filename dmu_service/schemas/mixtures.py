"""Mixture REST contract (DMU owns it; the trainer polls it and the TSM writes to it).

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
unknown source) are 422 with the reason, and no version is created. Weights are stored as given
and served normalised to sum 1 in ``weights``.
"""

from __future__ import annotations

import math
from datetime import datetime

from pydantic import BaseModel, Field, field_validator

MIXTURE_NAME_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"


def check_weights(weights: dict[str, float], *, allow_zero_total: bool = False) -> dict[str, float]:
    for source, weight in weights.items():
        if not isinstance(weight, (int, float)) or math.isnan(weight) or math.isinf(weight):
            raise ValueError(f"weight of source {source!r} is {weight!r}; weights must be finite numbers")
        if weight < 0:
            raise ValueError(f"weight of source {source!r} is {weight}; weights must be >= 0")
    if not allow_zero_total and sum(weights.values()) <= 0:
        raise ValueError("weights sum to 0; at least one source needs a positive weight")
    return weights


class MixtureChange(BaseModel):
    author: str = Field(default="anonymous", max_length=200, description="who made the change")
    reason: str = Field(default="", max_length=4000, description="why (shown in the history)")


class MixtureCreate(MixtureChange):
    name: str = Field(pattern=MIXTURE_NAME_PATTERN)
    weights: dict[str, float] = Field(min_length=1)

    _check = field_validator("weights")(check_weights)


class MixtureUpdate(MixtureChange):
    """PUT: the full new set of weights."""

    weights: dict[str, float] = Field(min_length=1)

    _check = field_validator("weights")(check_weights)


class MixturePatch(MixtureChange):
    """PATCH: weights for some sources; the others keep theirs. A weight of 0 drops a source."""

    weights: dict[str, float] = Field(min_length=1)

    @field_validator("weights")
    @classmethod
    def _check(cls, weights: dict[str, float]) -> dict[str, float]:
        return check_weights(weights, allow_zero_total=True)


class MixtureVersionPublic(BaseModel):
    name: str
    version: int
    weights: dict[str, float] = Field(description="normalised to sum to 1")
    raw_weights: dict[str, float] = Field(description="as given by the author")
    author: str
    reason: str
    created_at: datetime


class MixtureSummary(BaseModel):
    name: str
    current_version: int
    updated_at: datetime
