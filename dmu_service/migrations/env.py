"""Alembic environment of the DMU: the service kit's one implementation."""

from dmu_service.migrations import VERSION_TABLE
from dmu_service.models import Base
from heurimentor.service_kit.migrations import run_env


def _settings_url() -> str:
    from dmu_service.config import load_settings

    return load_settings().sqlalchemy_url


run_env(Base.metadata, version_table=VERSION_TABLE, default_url=_settings_url)
