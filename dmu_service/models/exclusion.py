from __future__ import annotations

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from dmu_service.models.base import Base

BigId = BigInteger().with_variant(Integer, "sqlite")  # SQLite: INTEGER PRIMARY KEY is its 64-bit rowid


class Exclusion(Base):
    """One document a run did not keep, and why: the run's exclusion log.

    Written in the transaction that commits the checkpoint step that decided it, so the log is
    exactly as far as the run's committed position (a crash leaves no rows of an unfinished step).
    A document is named ``run:file:record`` (file = index into the run's inputs).
    """

    __tablename__ = "run_exclusions"
    __table_args__ = (
        Index("ix_run_exclusions_run_rule", "run_id", "rule", "id"),
        Index("ix_run_exclusions_run_position", "run_id", "file_index", "record"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    file_index: Mapped[int] = mapped_column(Integer)
    record: Mapped[int] = mapped_column(BigInteger)
    rule: Mapped[str] = mapped_column(String(64))  # a reader problem, empty, language, a quality rule, exact_dup, near_dup
    value: Mapped[float | None] = mapped_column(Float, default=None)  # what tripped the rule (similarity for dups)
    duplicate_of: Mapped[str | None] = mapped_column(String(64), default=None)  # run:file:record of the kept document
    language: Mapped[str] = mapped_column(String(8), default="und")
