"""DMU settings: the only module that reads the environment.

Precedence, lowest first: defaults < YAML config file < environment (``HEURIMENTOR_DMU_*``) <
explicit overrides (CLI flags).
"""

from __future__ import annotations

import contextvars
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, InitSettingsSource, SettingsConfigDict

PLACEHOLDER_TOKENS = frozenset({"", "changeme", "change-me", "dev-token", "secret", "token"})
DEFAULT_DATA_DIR = Path.home() / ".local" / "share" / "heurimentor" / "dmu"

_file_values: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("dmu_config_file_values", default=None)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HEURIMENTOR_DMU_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default: SQLite file in data_dir")
    auth_token: SecretStr = SecretStr("changeme")
    reads_require_auth: bool = False
    host: str = "127.0.0.1"
    port: int = 8700
    # Cross-replica change notification: a waiting long-poll re-reads the DB at this interval.
    mixture_poll_interval_s: float = Field(default=0.25, gt=0, le=5)
    max_wait_s: float = Field(default=60.0, gt=0, description="cap on ?wait= for long-polls")
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _refuse_placeholder_token(self) -> Settings:
        if self.environment != "development" and self.auth_token.get_secret_value() in PLACEHOLDER_TOKENS:
            raise ValueError(
                "HEURIMENTOR_DMU_AUTH_TOKEN is unset or a placeholder; set a real secret outside development"
            )
        return self

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'dmu.sqlite3'}"

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
        file_source = InitSettingsSource(settings_cls, init_kwargs=_file_values.get() or {})
        return init_settings, env_settings, file_source


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from defaults, an optional YAML file, the environment and ``overrides`` (None = unset)."""
    values: dict[str, Any] = {}
    if config_file is not None:
        path = Path(config_file)
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"DMU config file {path}: cannot read: {e}") from e
        if not isinstance(values, dict):
            raise ValueError(f"DMU config file {path}: expected a mapping of settings, got {type(values).__name__}")
    token = _file_values.set(values)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    finally:
        _file_values.reset(token)
