"""TSM settings: the only place that reads the environment.

Precedence: defaults < YAML file (``HEURIMENTOR_TSM_CONFIG_FILE`` or ``--config``) < environment
(``HEURIMENTOR_TSM_*``, nested with ``__``) < CLI flags (passed as init arguments); an unknown key in
any of them, at any depth, is an error. The security fields and checks come from
``heurimentor.service_kit.settings`` (docs/security.md).
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from heurimentor.service_kit import settings as kit
from heurimentor.service_kit.security import TokenPolicy

# Upper bounds of the per-job settings: a value past them could only switch a detector off (an
# infinite factor, a window larger than any run) or make every evaluation of the job fail (a step
# window past the 64-bit columns), so it is a 422, not a setting.
MAX_WINDOW = 100_000  # samples a detector reads per evaluation
MAX_CONSECUTIVE = 10_000
MAX_FACTOR = 1e6
MAX_STEP_SPAN = 10**12
MAX_STALL_SECONDS = 30 * 24 * 3600.0

_DEFAULT_DB = f"sqlite:///{Path.home() / '.cache' / 'heurimentor' / 'tsm.db'}"


class _Strict(BaseModel):
    """A typo (``windw``) in a config file or a PATCH body is an error naming the key, not a silent default."""

    model_config = ConfigDict(extra="forbid")


class SpikeConfig(_Strict):
    """Loss spike: loss over what the mixture in force predicts for ``consecutive`` steps (see
    ``detectors/expected.py``): a step counts at half way to ``factor`` and ``noise_sigmas`` noise
    deviations above the expectation, so a spike of ``factor`` x is caught through the noise."""

    window: int = Field(default=50, ge=2, le=MAX_WINDOW)
    factor: float = Field(default=1.5, gt=1.0, le=MAX_FACTOR)
    consecutive: int = Field(default=3, ge=1, le=MAX_CONSECUTIVE)
    rollback_margin_steps: int = Field(default=100, ge=0, le=MAX_STEP_SPAN, description="resume this many steps before the spike (PaLM)")
    min_history: int = Field(
        default=10,
        ge=4,
        le=MAX_WINDOW,
        description="steps of history (after a rescale, LR "
        "restart or, without per-source losses, a mixture change) before a step is judged",
    )
    noise_sigmas: float = Field(
        default=3.5,
        ge=0.0,
        le=MAX_FACTOR,
        description="a step counts only this many robust noise deviations above the expectation (noisy runs get a higher bar)",
    )
    first_rollback: Literal["skip", "rerun"] = Field(
        default="skip",
        description="skip: resume before the spike and "
        "skip its data (PaLM); rerun: replay the same data first and "
        "skip it only if the spike recurs there (Megatron's rerun)",
    )


class DivergenceConfig(_Strict):
    """Runaway grad norm: grad_norm >= ``grad_norm_factor`` x the trailing median for ``consecutive`` steps."""

    window: int = Field(default=50, ge=2, le=MAX_WINDOW)
    grad_norm_factor: float = Field(default=10.0, gt=1.0, le=MAX_FACTOR)
    consecutive: int = Field(default=2, ge=1, le=MAX_CONSECUTIVE)


class PlateauConfig(_Strict):
    """Plateau: the smoothed loss falls by less than ``min_relative_drop`` over the last ``window`` steps."""

    window: int = Field(default=200, ge=4, le=MAX_WINDOW)
    ema_alpha: float = Field(default=0.1, gt=0.0, le=1.0)
    min_relative_drop: float = Field(default=0.005, ge=0.0, le=1.0)


class StallConfig(_Strict):
    seconds: float = Field(default=600.0, gt=0, le=MAX_STALL_SECONDS)


class StragglerConfig(_Strict):
    """A rank whose median step time over ``window`` steps is >= ``factor`` x the median over ranks."""

    window: int = Field(default=20, ge=1, le=MAX_WINDOW)
    factor: float = Field(default=1.5, gt=1.0, le=MAX_FACTOR)
    min_ranks: int = Field(default=2, ge=2, le=2**31 - 1)


class WeightChangeConfig(_Strict):
    """Per-layer weight-std trace distance per 1B tokens >= ``factor`` x its trailing median."""

    window: int = Field(default=10, ge=2, le=MAX_WINDOW)
    factor: float = Field(default=5.0, gt=1.0, le=MAX_FACTOR)


class DetectorConfig(_Strict):
    spike: SpikeConfig = Field(default_factory=SpikeConfig)
    divergence: DivergenceConfig = Field(default_factory=DivergenceConfig)
    plateau: PlateauConfig = Field(default_factory=PlateauConfig)
    stall: StallConfig = Field(default_factory=StallConfig)
    straggler: StragglerConfig = Field(default_factory=StragglerConfig)
    weight_change: WeightChangeConfig = Field(default_factory=WeightChangeConfig)


class GuardrailConfig(_Strict):
    weight_floor: float = Field(default=0.01, ge=0.0, lt=1.0, description="no source drops below this weight")
    max_change: float = Field(default=0.1, gt=0.0, le=1.0, description="largest change of one weight per update")
    cooldown_steps: int = Field(default=100, ge=0, le=MAX_STEP_SPAN, description="steps between two updates")


class PolicyConfig(_Strict):
    name: Literal["static", "odm", "learning_progress"] = "static"
    mixture: str | None = Field(
        default=None, pattern=r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$", description="DMU mixture the policy writes to"
    )
    trigger: Literal["interval", "plateau"] = Field(default="interval", description="update every cool-down, or only after a plateau")
    window_steps: int = Field(default=50, ge=1, le=MAX_WINDOW, description="steps of per-source loss averaged per observation")
    params: dict[Annotated[str, Field(max_length=100)], Annotated[float, Field(allow_inf_nan=False)]] = Field(
        default_factory=dict, max_length=100, description="policy-specific knobs (finite numbers)"
    )
    guardrails: GuardrailConfig = Field(default_factory=GuardrailConfig)


class Settings(kit.ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HEURIMENTOR_TSM_", env_nested_delimiter="__", extra="forbid")
    service_name: ClassVar[str] = "TSM"

    database_url: str = _DEFAULT_DB
    port: int = Field(default=8081, ge=1, le=65535)

    dmu_url: str | None = Field(default=None, description="DMU base URL; the mixture policy is off without it")
    dmu_token: SecretStr | None = None
    author: str = Field(default="tsm", description="author written on mixture versions")
    policy_mixtures: list[str] = Field(
        default_factory=list,
        description="fnmatch patterns of the DMU mixtures a job's policy may name (PATCH config); "
        "policy.mixture is always allowed, an admin token may name any",
    )

    max_request_bytes: int = Field(default=16 * 1024 * 1024, gt=0, le=1024**3, description="largest request body")
    evaluate_interval_seconds: float = Field(default=10.0, ge=0, description="0 disables the background loop")
    metrics_job_ttl_seconds: float = Field(default=24 * 3600, gt=0, description="jobs quiet for longer leave /metrics")

    detectors: DetectorConfig = Field(default_factory=DetectorConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)

    def named_secrets(self) -> list[tuple[str, SecretStr]]:
        extra = [("HEURIMENTOR_TSM_DMU_TOKEN", self.dmu_token)] if self.dmu_token is not None else []
        return super().named_secrets() + extra

    def token_policy(self) -> TokenPolicy:
        # With the operator following rollback recommendations, whoever can post metrics can restart jobs.
        if self.environment == "production" and self.dmu_url and not self.dmu_token:
            raise kit.InsecureSettings("TSM: HEURIMENTOR_TSM_DMU_TOKEN is required in production when HEURIMENTOR_TSM_DMU_URL is set")
        return super().token_policy()

    def policy_may_write(self, mixture: str) -> bool:
        return mixture == self.policy.mixture or any(fnmatchcase(mixture, pattern) for pattern in self.policy_mixtures)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from defaults, file, environment and the given overrides (CLI flags), in that order."""
    return kit.load_settings(Settings, config_file, **overrides)
