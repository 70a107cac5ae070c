"""Metric ingest contract (the TSM serves it; every trainer rank sends it).

    POST /v1/jobs/{job}/metrics   MetricBatch -> 200 IngestResult

``batch_id`` makes a retry idempotent: a batch the TSM already stored is acknowledged with
``duplicate=true`` and counted once. Non-finite values travel as the JSON strings "NaN",
"Infinity" and "-Infinity" (strict JSON has no such numbers); the TSM flags them as divergence
instead of storing them as ordinary values. A negative step or an oversized batch is 422/413.

Every field is bounded by what the TSM stores (``heurimentor.contracts.bounds``): steps, token
counts and mixture versions are 64-bit, ranks 32-bit, names at most 200 characters without NUL
or lone surrogates, times finite. A point repeated in one batch (same step and rank) is stored
once, and ``accepted_points`` counts what was stored.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, Field, PlainSerializer

from heurimentor.contracts.bounds import FiniteFloat, Rank, Step, TokenCount, Version, bounded_text

MAX_POINTS_PER_BATCH = 10_000
MAX_SERIES_PER_POINT = 1000  # scalars, source losses or layers in one point

SeriesName = bounded_text(200, min_length=1)  # the TSM's series name column
BatchId = bounded_text(200, min_length=1)


def _encode_float(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


# A float that may be non-finite and serialises to strict JSON.
Scalar = Annotated[float, PlainSerializer(_encode_float, return_type=float | str, when_used="json")]


class LayerStat(BaseModel):
    layer: SeriesName
    weight_std: Scalar
    update_norm: Scalar | None = None


class StepPoint(BaseModel):
    """What one rank measured at one optimizer step."""

    step: Step
    rank: Rank
    time: FiniteFloat = Field(description="unix seconds")
    tokens_seen: TokenCount = Field(default=0, description="global tokens consumed up to this step")
    mixture_version: Version | None = None
    # loss, grad_norm, lr, tokens_per_second, mfu, step_time_seconds, ...
    scalars: dict[SeriesName, Scalar] = Field(default_factory=dict, max_length=MAX_SERIES_PER_POINT)
    source_losses: dict[SeriesName, Scalar] = Field(default_factory=dict, max_length=MAX_SERIES_PER_POINT)
    layer_stats: list[LayerStat] = Field(default_factory=list, max_length=MAX_SERIES_PER_POINT)


class EvalResult(BaseModel):
    """A held-out validation loss (kind=val_loss, per source) or a downstream task score."""

    step: Step
    kind: Literal["val_loss", "downstream"]
    name: SeriesName = Field(description="source name for val_loss, task name for downstream")
    value: Scalar
    time: FiniteFloat


class MetricBatch(BaseModel):
    batch_id: BatchId
    points: list[StepPoint] = Field(default_factory=list, max_length=MAX_POINTS_PER_BATCH)
    evals: list[EvalResult] = Field(default_factory=list, max_length=MAX_POINTS_PER_BATCH)
    completed_step: Step | None = Field(
        default=None, description="sent by rank 0 once the run reached its final step: the job is done, and its silence is not a stall"
    )


class IngestResult(BaseModel):
    batch_id: str
    accepted_points: int
    accepted_evals: int
    duplicate: bool = False
    non_finite: int = Field(default=0, description="values flagged as divergence")
