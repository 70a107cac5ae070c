"""Engine and session factory of the DMU database: the service kit's (SQLite embedded default, PostgreSQL in production)."""

from heurimentor.service_kit.db import make_engine, make_session_factory

__all__ = ["make_engine", "make_session_factory"]
