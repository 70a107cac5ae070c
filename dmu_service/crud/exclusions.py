"""The exclusion log of ingestion runs (written by the runner, read by the CLI and REST)."""

from __future__ import annotations

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from dmu_service.models import Exclusion


def parse_document_id(value: str) -> tuple[int, int, int]:
    """``run:file:record`` -> its three integers; ValueError with the reason otherwise."""
    parts = value.split(":")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"document id {value!r}: expected RUN:FILE:RECORD, e.g. 3:0:17")
    run, file_index, record = (int(p) for p in parts)
    return run, file_index, record


def document_id(run_id: int, file_index: int, record: int) -> str:
    return f"{run_id}:{file_index}:{record}"


def add_exclusions(*, session: Session, run_id: int, rows: list[dict]) -> None:
    """Bulk insert (file_index, record, rule, value, duplicate_of, language) rows; the caller commits."""
    if rows:
        # Core's executemany on the table (the ORM's bulk path costs ~10 us a row in Python).
        session.execute(insert(Exclusion.__table__), [{"run_id": run_id, **row} for row in rows])


def list_exclusions(
    *, session: Session, run_id: int, rule: str | None = None, position: tuple[int, int] | None = None, after: int = 0, limit: int = 100
) -> list[Exclusion]:
    """One page in log order (keyset: rows with id > ``after``)."""
    query = select(Exclusion).where(Exclusion.run_id == run_id, Exclusion.id > after).order_by(Exclusion.id).limit(limit)
    if rule is not None:
        query = query.where(Exclusion.rule == rule)
    if position is not None:
        query = query.where(Exclusion.file_index == position[0], Exclusion.record == position[1])
    return list(session.scalars(query))
