from __future__ import annotations

from typing import Any, get_args

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tsm_service.models.base import Base, BigInt
from tsm_service.schemas.events import EventKind

EVENT_KINDS = get_args(EventKind)  # the API's list is the one list


class Event(Base):
    """A finding (or an action taken) with the evidence behind it. (job, kind, step, subject) is unique,
    so re-running a detector over the same steps never duplicates a finding."""

    __tablename__ = "tsm_events"
    __table_args__ = (UniqueConstraint("job_id", "kind", "step", "subject"), Index("ix_tsm_events_job_created", "job_id", "id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("tsm_jobs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(40))
    severity: Mapped[str] = mapped_column(String(16))
    step: Mapped[int] = mapped_column(BigInt)
    subject: Mapped[str] = mapped_column(String(200), default="", comment="metric, rank, layer or mixture concerned")
    message: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[float] = mapped_column(Float)


class RollbackRecommendation(Base):
    """What the operator should do after a spike or divergence: resume from the last checkpoint at or
    before ``resume_before_step`` and skip the data consumed in [skip_from, skip_to] (as PaLM did)."""

    __tablename__ = "tsm_rollbacks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("tsm_jobs.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("tsm_events.id", ondelete="CASCADE"), unique=True)
    resume_before_step: Mapped[int] = mapped_column(BigInt)
    skip_from_step: Mapped[int] = mapped_column(BigInt)
    skip_to_step: Mapped[int] = mapped_column(BigInt)
    skip_from_tokens: Mapped[int | None] = mapped_column(BigInt, default=None)
    skip_to_tokens: Mapped[int | None] = mapped_column(BigInt, default=None)
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open", comment="open | acknowledged | dismissed")
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
