"""Engine and session factory of the TSM database: the service kit's. The schema comes from Alembic
(``heurimentor tsm migrate``), never from the app."""

from heurimentor.service_kit.db import make_engine, make_session_factory

__all__ = ["make_engine", "make_session_factory"]
