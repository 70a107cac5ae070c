"""Keyword-only queries for sources and runs; callers commit (the route or the CLI command)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from dmu_service.models import Run, Source
from dmu_service.schemas.sources import SourceCreate, SourceUpdate


class SourceExists(ValueError):
    pass


def list_sources(*, session: Session) -> list[Source]:
    return list(session.scalars(select(Source).order_by(Source.name)))


def get_source(*, session: Session, name: str) -> Source | None:
    return session.scalar(select(Source).where(Source.name == name))


def source_names(*, session: Session) -> set[str]:
    return set(session.scalars(select(Source.name)))


def create_source(*, session: Session, source_in: SourceCreate) -> Source:
    if get_source(session=session, name=source_in.name) is not None:
        raise SourceExists(f"source {source_in.name!r} already exists")
    source = Source(**source_in.model_dump())
    session.add(source)
    session.flush()
    return source


def update_source(*, session: Session, source: Source, source_in: SourceUpdate) -> Source:
    for key, value in source_in.model_dump(exclude_unset=True, exclude_none=True).items():
        setattr(source, key, value)
    session.flush()
    return source


def list_runs(*, session: Session, source: str | None = None, status: str | None = None, limit: int = 100) -> list[Run]:
    query = select(Run).order_by(Run.id.desc()).limit(limit)
    if source is not None:
        query = query.join(Run.source).where(Source.name == source)
    if status is not None:
        query = query.where(Run.status == status)
    return list(session.scalars(query))


def get_run(*, session: Session, run_id: int) -> Run | None:
    return session.get(Run, run_id)
