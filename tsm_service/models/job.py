from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tsm_service.models.base import Base, BigInt


class Job(Base):
    """A training job the TSM has heard from; the live summary is kept here so /metrics is one query."""

    __tablename__ = "tsm_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(253), unique=True)
    created_at: Mapped[float] = mapped_column(Float)
    last_seen_at: Mapped[float] = mapped_column(Float, comment="unix seconds of the last ingest")
    last_step: Mapped[int | None] = mapped_column(BigInt, default=None)
    last_step_time: Mapped[float | None] = mapped_column(Float, default=None, comment="trainer clock of last_step")
    tokens_seen: Mapped[int] = mapped_column(BigInt, default=0)
    mixture_version: Mapped[int | None] = mapped_column(BigInt, default=None)
    step_time_seconds: Mapped[float | None] = mapped_column(Float, default=None, comment="median over ranks")
    step_time_skew_ratio: Mapped[float | None] = mapped_column(Float, default=None, comment="slowest rank / median")
    evaluated_step: Mapped[int] = mapped_column(BigInt, default=-1, comment="detectors have seen steps up to here")
    completed_step: Mapped[int | None] = mapped_column(BigInt, default=None, comment="the run finished at this step (no stall after it)")
    suspended_at: Mapped[float | None] = mapped_column(Float, default=None, comment="the operator suspended the job (no stall meanwhile)")
    config: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None, comment="per-job detector/policy overrides")


class IngestBatch(Base):
    """One accepted MetricBatch; its primary key makes a retried batch a no-op."""

    __tablename__ = "tsm_ingest_batches"

    job_id: Mapped[int] = mapped_column(ForeignKey("tsm_jobs.id", ondelete="CASCADE"), primary_key=True)
    batch_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    received_at: Mapped[float] = mapped_column(Float)
    points: Mapped[int] = mapped_column(Integer)
    evals: Mapped[int] = mapped_column(Integer)
    non_finite: Mapped[int] = mapped_column(Integer)
