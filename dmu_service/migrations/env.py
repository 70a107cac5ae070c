"""Alembic environment: the URL comes from the caller (``config.attributes['url']``) or the DMU settings."""

from __future__ import annotations

from alembic import context

from dmu_service.config import load_settings
from dmu_service.db import make_engine
from dmu_service.models import Base

config = context.config
url = config.attributes.get("url") or load_settings().sqlalchemy_url


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
