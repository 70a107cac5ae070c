"""Operator settings: the only place that reads the environment.

Precedence: defaults < YAML file (``HEURIMENTOR_OPERATOR_CONFIG_FILE`` or ``--config``) < environment
(``HEURIMENTOR_OPERATOR_*``) < CLI flags.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from heurimentor_operator.constants import DEFAULT_IMAGE


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HEURIMENTOR_OPERATOR_", extra="forbid")

    namespaces: list[str] = Field(default_factory=list, description="watch these namespaces; empty = all")
    kubeconfig: Path | None = Field(None, description="kubeconfig file; unset = $KUBECONFIG or in-cluster")
    default_image: str = Field(DEFAULT_IMAGE, description="trainer image for jobs that set no spec.image")
    peering_name: str = "heurimentor-operator"
    standalone: bool = Field(False, description="no peering: only safe with exactly one operator replica")
    pod_name: str | None = Field(None, description="this replica's pod (the chart sets it from the Downward API): its peering identity")
    priority: int | None = Field(None, description="peering priority; unset: derived from pod_name, so two replicas never tie")
    # A replica killed without saying goodbye stays in the peering object this long; the next one
    # waits for it to expire. kopf's 60 s default would leave the jobs unattended for a minute.
    peering_lifetime_s: int = Field(6, ge=3, le=600, description="seconds a replica's keep-alive in the peering object stays valid")
    # kopf keeps a watch open until the server closes it; without these a silently dead
    # connection stalls the operator (kopf's stale-watch issues), so both ends time out.
    watch_server_timeout_s: int = 300  # sent as ?timeoutSeconds=, an integer
    watch_client_timeout_s: float = 330.0
    watch_connect_timeout_s: float = 10.0
    request_timeout_s: float = 30.0
    resync_interval_s: float = Field(30.0, description="reconcile every job at least this often")
    debounce_s: float = Field(0.5, description="after a wake-up, gather further events this long before reconciling")
    tsm_poll_interval_s: float = Field(
        15.0, description="how often jobs with spec.tsm.autoRollback ask their TSM for rollback recommendations"
    )
    tsm_token: SecretStr | None = Field(None, description="bearer token for the TSM's writes (acknowledging recommendations)")
    tsm_timeout_s: float = Field(
        5.0, gt=0, description="per TSM request; TSM calls have their own threads, so a slow TSM never delays a reconcile"
    )
    metrics_port: int = Field(8080, description="Prometheus /metrics port; 0 disables")
    health_port: int = Field(8081, description="kopf liveness endpoint port; 0 disables")
    max_parallel_api_calls: int = 16
    log_level: str = "INFO"
    log_json: bool = True


def peering_priority(cfg: OperatorSettings) -> int:
    """The explicit priority, else one derived from the pod name (or, outside a pod, host and process).

    kopf pauses every replica while two share the highest priority ("Pausing all operators,
    including self"), so replicas of one Deployment must differ; a hash of the pod name does
    that without coordination, and a restarted pod (a new name) gets a new one."""
    if cfg.priority is not None:
        return cfg.priority
    seed = cfg.pod_name or f"{socket.gethostname()}/{os.getpid()}"
    return int.from_bytes(hashlib.sha256(seed.encode()).digest()[:4], "big") % 1_000_000_000


def load_settings(config_file: Path | None = None, **overrides: Any) -> OperatorSettings:
    """Settings from defaults, then the YAML file, then the environment, then ``overrides`` (CLI flags)."""
    file_values: dict[str, Any] = {}
    path = config_file
    if path is None:
        env_path = os.environ.get("HEURIMENTOR_OPERATOR_CONFIG_FILE")
        path = Path(env_path) if env_path else None
    if path is not None:
        try:
            file_values = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"cannot read operator config file {path}: {e}") from e
        if not isinstance(file_values, dict):
            raise ValueError(f"operator config file {path} must hold a mapping, not {type(file_values).__name__}")
    env_values = OperatorSettings().model_dump(exclude_unset=True)
    if "kubeconfig" not in env_values and os.environ.get("KUBECONFIG"):
        env_values["kubeconfig"] = os.environ["KUBECONFIG"].split(os.pathsep)[0]
    merged = {**file_values, **env_values, **{k: v for k, v in overrides.items() if v is not None}}
    return OperatorSettings.model_validate(merged)
