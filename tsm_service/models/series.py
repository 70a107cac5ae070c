from __future__ import annotations

from sqlalchemy import Float, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tsm_service.models.base import Base, BigInt

# Kinds of series: scalars (loss, grad_norm, ...), per-source training loss, per-layer weight
# statistics, held-out evaluations.
SERIES_KINDS = ("scalar", "source_loss", "layer_weight_std", "layer_update_norm", "val_loss", "downstream")


class Series(Base):
    """One named curve of a job; its last value feeds /metrics without touching the samples."""

    __tablename__ = "tsm_series"
    __table_args__ = (UniqueConstraint("job_id", "kind", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("tsm_jobs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    last_step: Mapped[int | None] = mapped_column(BigInt, default=None)
    last_value: Mapped[float | None] = mapped_column(Float, default=None)


class Sample(Base):
    """A finite value of a series at (step, rank). Non-finite values become divergence events instead."""

    __tablename__ = "tsm_samples"

    series_id: Mapped[int] = mapped_column(ForeignKey("tsm_series.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(BigInt, primary_key=True)
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    time: Mapped[float] = mapped_column(Float)


class StepRecord(Base):
    """When a rank finished a step, how many tokens the job had consumed, and under which mixture."""

    __tablename__ = "tsm_steps"
    __table_args__ = (Index("ix_tsm_steps_job_time", "job_id", "time"),)

    job_id: Mapped[int] = mapped_column(ForeignKey("tsm_jobs.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(BigInt, primary_key=True)
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    time: Mapped[float] = mapped_column(Float)
    tokens_seen: Mapped[int] = mapped_column(BigInt, default=0)
    mixture_version: Mapped[int | None] = mapped_column(BigInt, default=None)
