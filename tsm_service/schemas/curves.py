"""Curves read back for a UI or a notebook."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

SeriesKind = Literal["scalar", "source_loss", "layer_weight_std", "layer_update_norm", "val_loss", "downstream"]


class SeriesPublic(BaseModel):
    kind: SeriesKind
    name: str
    last_step: int | None
    last_value: float | None


class CurvePoint(BaseModel):
    step: int = Field(description="first step of the bucket")
    value: float = Field(description="mean over the bucket (and over ranks unless one rank was asked for)")
    min: float
    max: float
    count: int = Field(description="samples in the bucket")


class CurvePublic(BaseModel):
    job: str
    kind: SeriesKind
    name: str
    rank: int | None
    bucket_steps: int = Field(description="steps per point; 1 when not downsampled")
    points: list[CurvePoint]
