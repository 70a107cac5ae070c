"""One settings loader for both services, and the security fields they share.

Precedence, lowest first: defaults < YAML file (``--config`` or ``<PREFIX>CONFIG_FILE``) < environment
(``<PREFIX>*``, nested with ``__``) < flags. An unknown key is an error in every layer: a file's
``windw:`` or ``HEURIMENTOR_DMU_WINDW`` fails the start with the key, where it came from and the
closest known name, instead of being silently ignored.
"""

from __future__ import annotations

import contextvars
import difflib
import os
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource

from heurimentor.service_kit.security import Principal, TokenPolicy, TokenSpec, WeakSecret, check_secret

_file_values: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("service_file_values", default=None)

S = TypeVar("S", bound="ServiceSettings")


class SettingsError(ValueError):
    """A settings layer holds an unknown key or an unreadable file."""


class InsecureSettings(ValueError):
    """Production settings a server must not start with (no write token, a weak or placeholder token)."""


class ServiceSettings(BaseSettings):
    """Fields and checks both services have. Subclasses set ``model_config`` (env prefix, extra=forbid)."""

    service_name: ClassVar[str] = "service"

    environment: Literal["development", "production"] = Field(
        default="production", description="production unless told otherwise: development opens anonymous access"
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "INFO"
    log_json: bool = True

    auth_token: SecretStr | None = Field(default=None, description="admin token (every scope, every resource)")
    tokens: list[TokenSpec] = Field(default_factory=list, description="scoped tokens (read / write / admin)")
    reads_require_auth: bool | None = Field(default=None, description="reads need a token; unset: yes in production, no in development")
    max_request_bytes: int = Field(default=1024 * 1024, gt=0, le=1024**3, description="largest request body")

    @model_validator(mode="after")
    def _check_tokens(self) -> ServiceSettings:
        if len({spec.name for spec in self.tokens}) != len(self.tokens):
            raise ValueError("tokens: two tokens have the same name")
        # Only the tokens this service accepts: its own token for another service may well equal one of them.
        accepted = [spec.secret.get_secret_value() for spec in self.tokens]
        accepted += [self.auth_token.get_secret_value()] if self.auth_token is not None else []
        if len(set(accepted)) != len(accepted):
            raise ValueError("tokens: two tokens have the same secret")
        if self.reads_require_auth and not (self.auth_token or self.tokens):
            raise ValueError("reads_require_auth needs a token (auth_token or tokens)")
        return self

    def named_secrets(self) -> list[tuple[str, SecretStr]]:
        """Every secret the policy checks, with the setting that holds it (subclasses add theirs)."""
        prefix = self.model_config.get("env_prefix", "")
        named = [(f"{prefix}AUTH_TOKEN", self.auth_token)] if self.auth_token is not None else []
        return named + [(f"tokens[{spec.name}].secret", spec.secret) for spec in self.tokens]

    def token_policy(self) -> TokenPolicy:
        """The policy a server enforces; raises ``InsecureSettings`` where production forbids the settings.

        Checked when an app is built, not when settings load: ``migrate`` or ``ingest`` serve nothing.
        """
        if self.environment == "production":
            prefix = self.model_config.get("env_prefix", "")
            if self.auth_token is None and not any(spec.scope != "read" for spec in self.tokens):
                raise InsecureSettings(
                    f"{self.service_name}: production needs a write token ({prefix}AUTH_TOKEN or "
                    f"tokens); set environment: development to run without one"
                )
            for what, secret in self.named_secrets():
                try:
                    check_secret(secret.get_secret_value(), what=what)
                except WeakSecret as e:
                    raise InsecureSettings(f"{self.service_name}: {e} (production refuses weak tokens)") from e
        principals = [
            (
                spec.secret.get_secret_value().encode(),
                Principal(spec.name, spec.scope, tuple(spec.resources) if spec.resources is not None else None),
            )
            for spec in self.tokens
        ]
        if self.auth_token is not None:
            principals.append((self.auth_token.get_secret_value().encode(), Principal("admin", "admin", None)))
        reads = self.reads_require_auth if self.reads_require_auth is not None else self.environment == "production"
        # Development without any token is the one open mode; once a token exists, writes need one.
        return TokenPolicy(
            tokens=tuple(principals), reads_need_token=reads, writes_need_token=bool(principals) or self.environment == "production"
        )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        file_source = InitSettingsSource(settings_cls, init_kwargs=_file_values.get() or {})
        return init_settings, env_settings, file_source


def _unknown(keys: list[str], known: set[str], where: str) -> None:
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(known))}"
            raise SettingsError(f"{where}: unknown setting {key!r}{hint}")


def _read_file(path: Path, service: str) -> dict[str, Any]:
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise SettingsError(f"{service} config file {path}: cannot read: {e}") from e
    if not isinstance(values, dict):
        raise SettingsError(f"{service} config file {path}: expected a mapping of settings, got {type(values).__name__}")
    return values


def load_settings(cls: type[S], config_file: str | Path | None = None, **flags: Any) -> S:
    """``cls`` from defaults < ``config_file`` (or ``<PREFIX>CONFIG_FILE``) < environment < ``flags`` (None = unset)."""
    prefix = cls.model_config.get("env_prefix", "")
    delimiter = cls.model_config.get("env_nested_delimiter") or "__"
    known = set(cls.model_fields)
    for name in os.environ:
        key = name[len(prefix) :].lower().split(delimiter)[0] if prefix and name.upper().startswith(prefix) else None
        if key is not None and key != "config_file":
            _unknown([key], known, f"environment variable {name}")
    config_file = config_file or os.environ.get(f"{prefix}CONFIG_FILE") or None
    values: dict[str, Any] = {}
    if config_file is not None:
        path = Path(config_file)
        values = _read_file(path, cls.service_name)
        _unknown([str(k) for k in values], known, f"{cls.service_name} config file {path}")
    token = _file_values.set(values)
    try:
        return cls(**{k: v for k, v in flags.items() if v is not None})
    finally:
        _file_values.reset(token)
