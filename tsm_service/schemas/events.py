"""Findings of the detectors, actions taken, and rollback recommendations for the operator."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

EventKind = Literal[
    "loss_spike",
    "divergence",
    "plateau",
    "stall",
    "straggler",
    "weight_change_anomaly",
    "mixture_update",
    "mixture_conflict",
    "resumed",
    "rollback_outcome",
]
RollbackStatus = Literal["open", "acknowledged", "dismissed"]


class EventPublic(BaseModel):
    id: int
    job: str
    kind: EventKind
    severity: Literal["info", "warning", "critical"]
    step: int
    subject: str
    message: str
    evidence: dict[str, Any]
    created_at: float


class RollbackPublic(BaseModel):
    id: int
    job: str
    event_id: int
    resume_before_step: int
    skip_from_step: int
    skip_to_step: int
    skip_from_tokens: int | None
    skip_to_tokens: int | None
    reason: str
    status: RollbackStatus
    created_at: float
    updated_at: float


class RollbackUpdate(BaseModel):
    status: Literal["acknowledged", "dismissed"]
