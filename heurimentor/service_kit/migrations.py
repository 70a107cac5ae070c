"""Alembic for both services: a runner (``Migrations``) and the one ``env.py`` body (``run_env``).

The URL always comes from the caller (the service's settings), never from an ini file; each
service keeps its own version table so both may share one database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData

from heurimentor.service_kit.db import make_engine


@dataclass(frozen=True)
class Migrations:
    script_location: Path
    version_table: str

    def config(self, database_url: str) -> Config:
        config = Config()
        config.set_main_option("script_location", str(self.script_location))
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
        return config

    def upgrade(self, database_url: str, revision: str = "head") -> None:
        command.upgrade(self.config(database_url), revision)

    def downgrade(self, database_url: str, revision: str) -> None:
        command.downgrade(self.config(database_url), revision)


def run_env(metadata: MetaData, *, version_table: str, default_url: Callable[[], str]) -> None:
    """The body of a service's ``migrations/env.py``; ``default_url`` serves a bare ``alembic`` command line."""
    from alembic import context

    url = context.config.get_main_option("sqlalchemy.url") or default_url()
    options = {"target_metadata": metadata, "version_table": version_table, "render_as_batch": True}
    if context.is_offline_mode():
        context.configure(url=url, literal_binds=True, **options)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, **options)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()
