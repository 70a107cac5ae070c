"""Jobs as the TSM sees them, and their per-job detector/policy configuration."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tsm_service.config import DetectorConfig, PolicyConfig


class JobConfig(BaseModel):
    """Thresholds and policy of one job; anything left out falls back to the service defaults."""

    detectors: DetectorConfig = Field(default_factory=DetectorConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)


class JobConfigUpdate(BaseModel):
    detectors: DetectorConfig | None = None
    policy: PolicyConfig | None = None


class JobSuspension(BaseModel):
    """The operator's word that it suspended the job (its silence is then no stall) or resumed it."""

    suspended: bool


class JobPublic(BaseModel):
    name: str
    created_at: float
    last_seen_at: float
    last_step: int | None
    last_step_time: float | None
    tokens_seen: int
    mixture_version: int | None
    step_time_seconds: float | None
    step_time_skew_ratio: float | None
    evaluated_step: int
    completed_step: int | None = Field(description="the run reached its final step here; null while it trains")
    suspended_at: float | None = Field(description="when the operator said the job is suspended; null once it trains again")
    config: JobConfig
