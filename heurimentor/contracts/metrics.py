"""Metric ingest contract (the TSM serves it; every trainer rank sends it).

    POST /v1/jobs/{job}/metrics   MetricBatch -> 200 IngestResult

``batch_id`` makes a retry idempotent: a batch the TSM already stored is acknowledged with
``duplicate=true`` and counted once. Non-finite values travel as the JSON strings "NaN",
"Infinity" and "-Infinity" (strict JSON has no such numbers); the TSM flags them as divergence
instead of storing them as ordinary values. A negative step or an oversized batch is 422/413.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, Field, PlainSerializer

MAX_POINTS_PER_BATCH = 10_000


def _encode_float(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


# A float that may be non-finite and serialises to strict JSON.
Scalar = Annotated[float, PlainSerializer(_encode_float, return_type=float | str, when_used="json")]


class LayerStat(BaseModel):
    layer: str
    weight_std: Scalar
    update_norm: Scalar | None = None


class StepPoint(BaseModel):
    """What one rank measured at one optimizer step."""

    step: int = Field(ge=0)
    rank: int = Field(ge=0)
    time: float = Field(description="unix seconds")
    tokens_seen: int = Field(default=0, ge=0, description="global tokens consumed up to this step")
    mixture_version: int | None = None
    # loss, grad_norm, lr, tokens_per_second, mfu, step_time_seconds, ...
    scalars: dict[str, Scalar] = Field(default_factory=dict)
    source_losses: dict[str, Scalar] = Field(default_factory=dict)
    layer_stats: list[LayerStat] = Field(default_factory=list)


class EvalResult(BaseModel):
    """A held-out validation loss (kind=val_loss, per source) or a downstream task score."""

    step: int = Field(ge=0)
    kind: Literal["val_loss", "downstream"]
    name: str = Field(description="source name for val_loss, task name for downstream")
    value: Scalar
    time: float


class MetricBatch(BaseModel):
    batch_id: str = Field(min_length=1, max_length=200)
    points: list[StepPoint] = Field(default_factory=list, max_length=MAX_POINTS_PER_BATCH)
    evals: list[EvalResult] = Field(default_factory=list, max_length=MAX_POINTS_PER_BATCH)
    completed_step: int | None = Field(default=None, ge=0, description="sent by rank 0 once the run reached its final step: "
                                       "the job is done, and its silence is not a stall")


class IngestResult(BaseModel):
    batch_id: str
    accepted_points: int
    accepted_evals: int
    duplicate: bool = False
    non_finite: int = Field(default=0, description="values flagged as divergence")
