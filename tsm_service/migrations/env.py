"""Alembic environment of the TSM: the service kit's one implementation."""

from heurimentor.service_kit.migrations import run_env
from tsm_service.migrations import VERSION_TABLE
from tsm_service.models import Base


def _settings_url() -> str:
    from tsm_service.config import load_settings

    return load_settings().database_url


run_env(Base.metadata, version_table=VERSION_TABLE, default_url=_settings_url)
