from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from dmu_service.models.base import Base, BigInt, utcnow


class Mixture(Base):
    __tablename__ = "mixtures"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    current_version: Mapped[int] = mapped_column(BigInt, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class MixtureVersion(Base):
    """An immutable version; (mixture_id, version) is unique, so two writers cannot both make version N."""

    __tablename__ = "mixture_versions"
    __table_args__ = (UniqueConstraint("mixture_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    mixture_id: Mapped[int] = mapped_column(ForeignKey("mixtures.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(BigInt)
    raw_weights: Mapped[dict] = mapped_column(JSON)
    author: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    mixture: Mapped[Mixture] = relationship(lazy="joined")
