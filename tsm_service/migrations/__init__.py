"""Alembic migrations of the TSM schema; run with ``heurimentor tsm migrate`` before ``serve``."""

from __future__ import annotations

from pathlib import Path

from heurimentor.service_kit.migrations import Migrations

VERSION_TABLE = "tsm_alembic_version"  # the DMU keeps its own; both may share one database
MIGRATIONS = Migrations(script_location=Path(__file__).parent, version_table=VERSION_TABLE)
alembic_config = MIGRATIONS.config
upgrade = MIGRATIONS.upgrade
downgrade = MIGRATIONS.downgrade
