"""TSM settings: the only place that reads the environment.

Precedence: defaults < YAML file (``HEURIMENTOR_TSM_CONFIG_FILE`` or ``--config``) < environment
(``HEURIMENTOR_TSM_*``) < CLI flags (passed as init arguments).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

_DEFAULT_DB = f"sqlite:///{Path.home() / '.cache' / 'heurimentor' / 'tsm.db'}"


class SpikeConfig(BaseModel):
    """Loss spike: loss >= ``factor`` x the trailing-window mean for ``consecutive`` steps."""

    window: int = Field(default=50, ge=2)
    factor: float = Field(default=1.5, gt=1.0)
    consecutive: int = Field(default=3, ge=1)
    rollback_margin_steps: int = Field(default=100, ge=0, description="resume this many steps before the spike (PaLM)")


class DivergenceConfig(BaseModel):
    """Runaway grad norm: grad_norm >= ``grad_norm_factor`` x the trailing median for ``consecutive`` steps."""

    window: int = Field(default=50, ge=2)
    grad_norm_factor: float = Field(default=10.0, gt=1.0)
    consecutive: int = Field(default=2, ge=1)


class PlateauConfig(BaseModel):
    """Plateau: the smoothed loss falls by less than ``min_relative_drop`` over the last ``window`` steps."""

    window: int = Field(default=200, ge=4)
    ema_alpha: float = Field(default=0.1, gt=0.0, le=1.0)
    min_relative_drop: float = Field(default=0.005, ge=0.0)


class StallConfig(BaseModel):
    seconds: float = Field(default=600.0, gt=0)


class StragglerConfig(BaseModel):
    """A rank whose median step time over ``window`` steps is >= ``factor`` x the median over ranks."""

    window: int = Field(default=20, ge=1)
    factor: float = Field(default=1.5, gt=1.0)
    min_ranks: int = Field(default=2, ge=2)


class WeightChangeConfig(BaseModel):
    """Per-layer weight-std trace distance per 1B tokens >= ``factor`` x its trailing median."""

    window: int = Field(default=10, ge=2)
    factor: float = Field(default=5.0, gt=1.0)


class DetectorConfig(BaseModel):
    spike: SpikeConfig = Field(default_factory=SpikeConfig)
    divergence: DivergenceConfig = Field(default_factory=DivergenceConfig)
    plateau: PlateauConfig = Field(default_factory=PlateauConfig)
    stall: StallConfig = Field(default_factory=StallConfig)
    straggler: StragglerConfig = Field(default_factory=StragglerConfig)
    weight_change: WeightChangeConfig = Field(default_factory=WeightChangeConfig)


class GuardrailConfig(BaseModel):
    weight_floor: float = Field(default=0.01, ge=0.0, lt=1.0, description="no source drops below this weight")
    max_change: float = Field(default=0.1, gt=0.0, le=1.0, description="largest change of one weight per update")
    cooldown_steps: int = Field(default=100, ge=0, description="steps between two updates")


class PolicyConfig(BaseModel):
    name: Literal["static", "odm", "learning_progress"] = "static"
    mixture: str | None = Field(default=None, description="DMU mixture the policy writes to")
    trigger: Literal["interval", "plateau"] = Field(default="interval", description="update every cool-down, or only after a plateau")
    window_steps: int = Field(default=50, ge=1, description="steps of per-source loss averaged per observation")
    params: dict[str, float] = Field(default_factory=dict, description="policy-specific knobs")
    guardrails: GuardrailConfig = Field(default_factory=GuardrailConfig)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HEURIMENTOR_TSM_", env_nested_delimiter="__", extra="forbid")

    environment: Literal["development", "production"] = "development"
    config_file: Path | None = None
    database_url: str = _DEFAULT_DB
    host: str = "127.0.0.1"
    port: int = 8081
    log_level: str = "INFO"
    log_json: bool = True

    auth_token: SecretStr | None = Field(default=None, description="bearer token for writes (metric ingest, job config, "
                                         "rollback status); unset: writes are open (development only)")
    reads_require_auth: bool = Field(default=False, description="reads (curves, events, rollbacks, jobs) need the token too")
    dmu_url: str | None = Field(default=None, description="DMU base URL; the mixture policy is off without it")
    dmu_token: SecretStr | None = None
    author: str = Field(default="tsm", description="author written on mixture versions")

    max_request_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    evaluate_interval_seconds: float = Field(default=10.0, ge=0, description="0 disables the background loop")
    metrics_job_ttl_seconds: float = Field(default=24 * 3600, gt=0, description="jobs quiet for longer leave /metrics")

    detectors: DetectorConfig = Field(default_factory=DetectorConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> "Settings":
        # With the operator following rollback recommendations, whoever can post metrics can restart jobs.
        if self.environment == "production" and not self.auth_token:
            raise ValueError("HEURIMENTOR_TSM_AUTH_TOKEN is required in production (metric ingest can trigger rollbacks)")
        if self.environment == "production" and self.auth_token and self.auth_token.get_secret_value() in {"changeme", "dev"}:
            raise ValueError("HEURIMENTOR_TSM_AUTH_TOKEN is a placeholder; set a real token in production")
        if self.reads_require_auth and not self.auth_token:
            raise ValueError("reads_require_auth needs auth_token")
        if self.environment == "production" and self.dmu_url and not self.dmu_token:
            raise ValueError("HEURIMENTOR_TSM_DMU_TOKEN is required in production when HEURIMENTOR_TSM_DMU_URL is set")
        if self.environment == "production" and self.dmu_token and self.dmu_token.get_secret_value() in {"changeme", "dev"}:
            raise ValueError("HEURIMENTOR_TSM_DMU_TOKEN is a placeholder; set a real token in production")
        return self

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file(init_settings(), env_settings())
        if config_file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)


def _config_file(*layers: dict[str, Any]) -> Path | None:
    for layer in layers:
        if layer.get("config_file"):
            path = Path(layer["config_file"])
            if not path.is_file():
                raise FileNotFoundError(f"TSM config file {path} does not exist")
            return path
    return None


def load_settings(**overrides: Any) -> Settings:
    """Settings from defaults, file, environment and the given overrides (CLI flags), in that order."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
