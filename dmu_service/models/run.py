from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from dmu_service.models.base import Base, utcnow
from dmu_service.models.source import Source


class RunStatus(enum.StrEnum):
    running = "running"  # in progress, or crashed (resume or discard it)
    completed = "completed"  # its kept documents are in the dedup index and the source's shards
    discarded = "discarded"  # its outputs were deleted; it never counted


class Run(Base):
    """One ingestion of files into a source. ``checkpoint`` says how far it got, durably."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="RESTRICT"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.running.value, index=True)
    backend: Mapped[str] = mapped_column(String(16), default="local")
    inputs: Mapped[list] = mapped_column(JSON, default=list)  # resolved input files, in order
    config: Mapped[dict] = mapped_column(JSON, default=dict)  # the effective PipelineConfig
    tokenizer_path: Mapped[str | None] = mapped_column(String(2000), default=None)
    tokenizer_id: Mapped[str | None] = mapped_column(String(16), default=None)
    counts: Mapped[dict] = mapped_column(JSON, default=dict)
    checkpoint: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)

    source: Mapped[Source] = relationship(lazy="joined")
