from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from tsm_service.models.base import Base, BigInt


class PolicyState(Base):
    """The adaptive policy's memory for one job, so a TSM restart resumes the bandit where it was."""

    __tablename__ = "tsm_policy_state"

    job_id: Mapped[int] = mapped_column(ForeignKey("tsm_jobs.id", ondelete="CASCADE"), primary_key=True)
    policy: Mapped[str] = mapped_column(String(40))
    mixture: Mapped[str] = mapped_column(String(63))
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    weights: Mapped[dict[str, float]] = mapped_column(JSON, default=dict, comment="last weights written or adopted")
    mixture_version: Mapped[int | None] = mapped_column(BigInt, default=None, comment="DMU version of those weights")
    last_update_step: Mapped[int | None] = mapped_column(BigInt, default=None)
