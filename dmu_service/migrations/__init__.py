"""Alembic migrations of the DMU schema; run with ``heurimentor dmu migrate`` before ``serve``."""

from __future__ import annotations

from pathlib import Path

from heurimentor.service_kit.migrations import Migrations

VERSION_TABLE = "alembic_version"  # the DMU's since its first release; the TSM keeps its own
MIGRATIONS = Migrations(script_location=Path(__file__).parent, version_table=VERSION_TABLE)
alembic_config = MIGRATIONS.config
upgrade = MIGRATIONS.upgrade
downgrade = MIGRATIONS.downgrade
