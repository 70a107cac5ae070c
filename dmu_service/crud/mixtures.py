"""Keyword-only queries for mixtures. Every change appends an immutable version; callers commit (the route)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dmu_service.models import Mixture, MixtureVersion
from dmu_service.models.base import utcnow
from heurimentor.contracts.mixtures import MixtureVersionPublic, check_weights


class MixtureNotFound(LookupError):
    pass


class MixtureExists(ValueError):
    pass


class VersionConflict(RuntimeError):
    """If-Match named a version that is no longer current (or a concurrent writer won)."""


class InvalidWeights(ValueError):
    pass


def to_public(version: MixtureVersion) -> MixtureVersionPublic:
    total = sum(version.raw_weights.values())
    return MixtureVersionPublic(
        name=version.mixture.name,
        version=version.version,
        weights={k: v / total for k, v in sorted(version.raw_weights.items())},
        raw_weights=dict(sorted(version.raw_weights.items())),
        author=version.author,
        reason=version.reason,
        created_at=version.created_at,
    )


def list_mixtures(*, session: Session) -> list[Mixture]:
    return list(session.scalars(select(Mixture).order_by(Mixture.name)))


def get_mixture(*, session: Session, name: str, lock: bool = False) -> Mixture:
    """``lock``: hold the row (SELECT ... FOR UPDATE on PostgreSQL) until the caller's commit, so
    concurrent writers queue instead of racing for the next version number."""
    query = select(Mixture).where(Mixture.name == name)
    mixture = session.scalar(query.with_for_update() if lock else query)
    if mixture is None:
        raise MixtureNotFound(f"mixture {name!r} does not exist")
    return mixture


def current_version_number(*, session: Session, name: str) -> int:
    version = session.scalar(select(Mixture.current_version).where(Mixture.name == name))
    if version is None:
        raise MixtureNotFound(f"mixture {name!r} does not exist")
    return version


def get_version(*, session: Session, name: str, version: int | None = None) -> MixtureVersion:
    mixture = get_mixture(session=session, name=name)
    number = mixture.current_version if version is None else version
    found = session.scalar(select(MixtureVersion).where(MixtureVersion.mixture_id == mixture.id, MixtureVersion.version == number))
    if found is None:
        raise MixtureNotFound(f"mixture {name!r} has no version {number}")
    return found


def list_versions(*, session: Session, name: str) -> list[MixtureVersion]:
    mixture = get_mixture(session=session, name=name)
    return list(session.scalars(select(MixtureVersion).where(MixtureVersion.mixture_id == mixture.id).order_by(MixtureVersion.version)))


def _check_sources(name: str, weights: dict[str, float], known_sources: set[str]) -> None:
    unknown = sorted(set(weights) - known_sources)
    if unknown:
        raise InvalidWeights(f"mixture {name!r}: unknown source(s) {', '.join(unknown)}; register them first")


def create_mixture(
    *, session: Session, name: str, weights: dict[str, float], author: str, reason: str, known_sources: set[str]
) -> MixtureVersion:
    _check_sources(name, weights, known_sources)
    if session.scalar(select(Mixture.id).where(Mixture.name == name)) is not None:
        raise MixtureExists(f"mixture {name!r} already exists; PUT or PATCH it to change weights")
    mixture = Mixture(name=name, current_version=1, updated_at=utcnow())
    version = MixtureVersion(mixture=mixture, version=1, raw_weights=weights, author=author, reason=reason)
    session.add_all([mixture, version])
    try:
        session.flush()
    except IntegrityError as e:
        session.rollback()
        raise MixtureExists(f"mixture {name!r} already exists") from e
    return version


def add_version(
    *,
    session: Session,
    name: str,
    weights: dict[str, float],
    author: str,
    reason: str,
    known_sources: set[str],
    if_match: int | None = None,
    merge: bool = False,
) -> MixtureVersion:
    """Append a version (the caller commits). ``merge``: PATCH semantics (given weights override, 0 drops a source)."""
    mixture = get_mixture(session=session, name=name, lock=True)
    if if_match is not None and mixture.current_version != if_match:
        raise VersionConflict(f"mixture {name!r} is at version {mixture.current_version}, If-Match named {if_match}")
    if merge:
        current = get_version(session=session, name=name).raw_weights
        weights = {k: v for k, v in {**current, **weights}.items() if v != 0}
        try:
            check_weights(weights)
        except ValueError as e:
            raise InvalidWeights(f"mixture {name!r}: after the patch, {e}") from e
    _check_sources(name, weights, known_sources)
    number = mixture.current_version + 1
    version = MixtureVersion(mixture=mixture, version=number, raw_weights=weights, author=author, reason=reason)
    session.add(version)
    try:
        session.flush()  # SQLite reads without the lock: the unique (mixture_id, version) makes a racing writer fail here
    except IntegrityError as e:
        session.rollback()
        raise VersionConflict(f"mixture {name!r}: a concurrent change created version {number} first") from e
    mixture.current_version = number
    mixture.updated_at = version.created_at
    session.flush()
    return version
