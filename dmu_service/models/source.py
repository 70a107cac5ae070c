from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from dmu_service.models.base import Base, utcnow


class Source(Base):
    """A registered data source: where documents come from and how they are cleaned."""

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    language: Mapped[str] = mapped_column(String(16))  # en | zh | code | mixed
    domain: Mapped[str] = mapped_column(String(100), default="")
    location: Mapped[str] = mapped_column(String(2000), default="")
    pipeline: Mapped[dict] = mapped_column(JSON, default=dict)  # PipelineConfig overrides
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
