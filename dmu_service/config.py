"""DMU settings: the only module that reads the environment.

Precedence, lowest first: defaults < YAML config file < environment (``HEURIMENTOR_DMU_*``) <
explicit overrides (CLI flags); an unknown key in any of them is an error. The security fields
(``environment``, ``auth_token``, ``tokens``, ``reads_require_auth``, ``max_request_bytes``) and
their checks come from ``heurimentor.service_kit.settings`` (docs/security.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from heurimentor.service_kit import settings as kit

DEFAULT_DATA_DIR = Path.home() / ".local" / "share" / "heurimentor" / "dmu"


class Settings(kit.ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HEURIMENTOR_DMU_", env_nested_delimiter="__", extra="forbid")
    service_name: ClassVar[str] = "DMU"

    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default: SQLite file in data_dir")
    port: int = Field(default=8700, ge=1, le=65535)
    # Cross-replica change notification: a waiting long-poll re-reads the DB at this interval.
    mixture_poll_interval_s: float = Field(default=0.25, gt=0, le=5)
    max_wait_s: float = Field(default=60.0, gt=0, description="cap on ?wait= for long-polls")

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'dmu.sqlite3'}"


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from defaults, an optional YAML file, the environment and ``overrides`` (None = unset)."""
    return kit.load_settings(Settings, config_file, **overrides)
