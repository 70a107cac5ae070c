"""Training configuration: plain dataclasses, loaded with precedence defaults < YAML file < env < CLI.

The operator renders a job's spec into a YAML file mounted at ``/etc/heurimentor/train.yaml``;
``HEURIMENTOR_TRAIN__<SECTION>__<FIELD>`` environment variables and ``--set section.field=value``
flags override it (values are parsed as YAML, so ``--set data.static_weights='{en: 1, zh: 1}'``
works). This module is the only one in the trainer that reads the environment.
"""

from __future__ import annotations

import argparse
import os
import re
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from heurimentor.contracts import worker_env as env_names
from heurimentor.contracts.jobs import JOB_NAME_PATTERN

DEFAULT_CONFIG_PATH = "/etc/heurimentor/train.yaml"
ENV_PREFIX = "HEURIMENTOR_TRAIN__"


class ConfigError(ValueError):
    """A training configuration that cannot run; the message names the field."""


@dataclass
class OptimConfig:
    lr: float | None = None  # None: the preset's learning rate
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio at the last step
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0


@dataclass
class DataConfig:
    shard_root: str = ""  # one folder per source, each a DMU tokenized source (manifest.json + shards)
    sources: list[str] = field(default_factory=list)  # empty: every source folder under shard_root
    tokenizer_id: str | None = None  # shard_root is a DMU data dir with several tokenizers' shards: use this one's
    mixture: str | None = None  # mixture name on the DMU; None: static weights only
    dmu_url: str | None = None
    dmu_token: str | None = None  # when the DMU requires auth for reads; pass it by env, not in the file
    static_weights: dict[str, float] = field(default_factory=dict)  # before/without the DMU; empty: equal
    poll_wait_seconds: float = 30.0  # long-poll hold time of GET /mixtures/{name}/current?wait=
    val_samples_per_source: int = 0  # held out from the end of each source for validation loss
    sample_log_dir: str | None = None  # audit log: which sample ids each step trained on


@dataclass
class CheckpointConfig:
    dir: str | None = None  # None: no checkpoints
    interval: int = 100
    keep: int = 3  # newest complete checkpoints kept; older ones are deleted
    resume: bool = True  # resume from dir's "latest" when there is one


@dataclass
class MetricsConfig:
    tsm_url: str | None = None  # None: metrics are logged and exported to Prometheus only
    tsm_token: str | None = None  # when the TSM requires auth for writes; pass it by env, not in the file
    eval_interval: int = 100  # weight statistics, validation loss and downstream evals
    eval_batches: int = 2  # micro batches of held-out samples per source
    downstream: list[dict[str, Any]] = field(default_factory=list)  # [{kind: multiple_choice, path: x.jsonl}]
    prometheus_port: int | None = None  # served by local rank 0 for every process on the node
    prometheus_dir: str | None = None  # multiprocess directory shared by the node's ranks
    spool_dir: str | None = None  # undelivered TSM batches are saved here at exit and resent at start
    flush_interval_seconds: float = 2.0
    progress_interval_steps: int = 10  # in a pod, rank 0 annotates it with its progress this often (and after checkpoints)
    peak_tflops_per_device: float | None = None  # None: looked up from the GPU name; unknown on CPU


@dataclass
class TrainConfig:
    job: str = "local"
    preset: str = "debug"
    model: dict[str, Any] = field(default_factory=dict)  # ModelArgs overrides, e.g. {vocab_size: 32000}
    steps: int = 1000  # length of the run (the LR schedule's horizon)
    stop_at_step: int | None = None  # end this launch early (after a checkpoint), e.g. to train in time slices
    global_batch: int | None = None  # sequences per optimizer step; None: the preset's
    micro_batch: int = 1  # sequences per forward/backward on one rank
    seq_len: int | None = None  # None: the preset's max_seq_len
    pool: str = "default"  # heterogeneous device pools: the pool this rank group belongs to
    # This pool's speed relative to the others (a static fact of the pool, never the replica count):
    # after each rendezvous the ranks split the global batch by it (heurimentor.contracts.batch).
    relative_throughput: float = 1.0
    seed: int = 0
    device: str = "auto"  # auto: cuda when available, else cpu
    fsdp: bool | None = None  # shard with FSDP2 when distributed; None: on GPU (DDP on CPU)
    activation_checkpointing: bool = False
    compile: bool = False
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)

    def __post_init__(self) -> None:
        positive = {
            "steps": self.steps,
            "micro_batch": self.micro_batch,
            "checkpoint.interval": self.checkpoint.interval,
            "checkpoint.keep": self.checkpoint.keep,
            "metrics.eval_interval": self.metrics.eval_interval,
            "metrics.progress_interval_steps": self.metrics.progress_interval_steps,
        }
        if self.global_batch is not None:
            positive["global_batch"] = self.global_batch
        if self.seq_len is not None:
            positive["seq_len"] = self.seq_len
        for name, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{name} must be > 0, got {value}")
        if not self.relative_throughput > 0:
            raise ConfigError(f"relative_throughput must be > 0, got {self.relative_throughput}")
        if self.optim.warmup_steps < 0:
            raise ConfigError(f"optim.warmup_steps must be >= 0, got {self.optim.warmup_steps}")
        if not 0 <= self.optim.min_lr_ratio <= 1:
            raise ConfigError(f"optim.min_lr_ratio must be in [0, 1], got {self.optim.min_lr_ratio}")
        if not self.data.shard_root:
            raise ConfigError("data.shard_root is required: the folder holding one tokenized source per subfolder")
        if self.metrics.tsm_url and not re.fullmatch(JOB_NAME_PATTERN, self.job):
            raise ConfigError(
                f"job={self.job!r} cannot name a job on the TSM (metrics.tsm_url): use lower-case letters, "
                "digits, '.', '-' and '_', starting and ending with a letter or digit (no '/')"
            )
        if self.data.mixture and not self.data.dmu_url:
            raise ConfigError(f"data.mixture={self.data.mixture!r} needs data.dmu_url")
        for source, weight in self.data.static_weights.items():
            if not weight >= 0:
                raise ConfigError(f"data.static_weights[{source!r}] must be >= 0, got {weight}")
        if self.data.static_weights and sum(self.data.static_weights.values()) <= 0:
            raise ConfigError("data.static_weights sum to 0; at least one source needs a positive weight")


@dataclass(frozen=True)
class DistEnv:
    """What torchrun tells a worker about its place in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    restart_count: int = 0

    @property
    def distributed(self) -> bool:
        return "WORLD_SIZE" in os.environ

    @classmethod
    def from_env(cls) -> DistEnv:
        env = os.environ
        return cls(
            rank=int(env.get("RANK", 0)),
            local_rank=int(env.get("LOCAL_RANK", 0)),
            world_size=int(env.get("WORLD_SIZE", 1)),
            restart_count=int(env.get("TORCHELASTIC_RESTART_COUNT", 0)),
        )


@dataclass(frozen=True)
class PodEnv:
    """What the operator tells a worker pod: its name (downward API) and the attempt's decisions."""

    pod_name: str | None = None
    namespace: str | None = None
    attempt: str | None = None
    rollback_to_step: int | None = None  # restart from the newest checkpoint at or before this step
    rollback_skip_steps: tuple[int, int] | None = None  # ... and skip the data of these steps (inclusive)
    kubeconfig: str | None = None  # outside a cluster: the credentials progress reports use

    @classmethod
    def from_env(cls, environ: typing.Mapping[str, str] | None = None) -> PodEnv:
        env = os.environ if environ is None else environ
        raw = env.get(env_names.HEURIMENTOR_ROLLBACK_TO_STEP) or None
        step = None
        if raw is not None:
            try:
                step = env_names.parse_step(raw)
            except ValueError as e:
                raise ConfigError(f"{env_names.HEURIMENTOR_ROLLBACK_TO_STEP}={raw!r} is not a step number (an integer >= 0)") from e
        skip = None
        raw_skip = env.get(env_names.HEURIMENTOR_ROLLBACK_SKIP_STEPS) or None
        if raw_skip is not None:
            try:
                if step is None:
                    raise ValueError(f"{env_names.HEURIMENTOR_ROLLBACK_TO_STEP} is not set")
                skip = env_names.parse_step_range(raw_skip)
            except ValueError as e:
                raise ConfigError(
                    f"{env_names.HEURIMENTOR_ROLLBACK_SKIP_STEPS}={raw_skip!r}: expected FROM-TO (steps, FROM <= TO) "
                    f"together with {env_names.HEURIMENTOR_ROLLBACK_TO_STEP}"
                ) from e
        return cls(
            pod_name=env.get(env_names.POD_NAME) or None,
            namespace=env.get(env_names.POD_NAMESPACE) or None,
            attempt=env.get(env_names.HEURIMENTOR_ATTEMPT) or None,
            rollback_to_step=step,
            rollback_skip_steps=skip,
            kubeconfig=env.get("KUBECONFIG") or None,
        )


def _coerce(value: Any, hint: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, path)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if is_dataclass(hint):
        return _build(hint, value, path)
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif origin is list:
        if isinstance(value, list):
            (item,) = typing.get_args(hint)
            return [_coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict):
            _, item = typing.get_args(hint)
            return {str(k): _coerce(v, item, f"{path}[{k!r}]") for k, v in value.items()}
    name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{path} must be {name}, got {value!r}")


def _build(cls: type, raw: Any, path: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path or 'config'} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(f"unknown field {where}{unknown[0]}; known fields: {', '.join(sorted(known))}")
    return cls(**{name: _coerce(value, hints[name], f"{path}.{name}" if path else name) for name, value in raw.items()})


def _set_dotted(tree: dict, key: str, value: Any) -> None:
    parts = [p for p in key.split(".") if p]
    if not parts:
        raise ConfigError(f"empty key in override {key!r}")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {key!r}: {part} is not a section")
    node[parts[-1]] = value


def _parse_override(item: str, origin: str) -> tuple[str, Any]:
    key, sep, text = item.partition("=")
    if not sep:
        raise ConfigError(f"{origin} {item!r} must look like section.field=value")
    try:
        return key.strip(), yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{origin} {item!r}: value is not valid YAML: {e}") from e


def load_config(path: str | os.PathLike | None = None, overrides: list[str] = (), *, environ: dict[str, str] | None = None) -> TrainConfig:
    """Defaults < YAML file < ``HEURIMENTOR_TRAIN__A__B`` env < ``a.b=value`` overrides."""
    environ = os.environ if environ is None else environ
    tree: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        try:
            loaded = yaml.safe_load(file.read_text()) or {}
        except OSError as e:
            raise ConfigError(f"config file {file}: cannot read: {e}") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {file}: not valid YAML: {e}") from e
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {file}: top level must be a mapping, got {type(loaded).__name__}")
        tree = loaded
    for name, text in sorted(environ.items()):
        if name.startswith(ENV_PREFIX):
            key, value = _parse_override(f"{name[len(ENV_PREFIX) :].lower().replace('__', '.')}={text}", "environment variable")
            _set_dotted(tree, key, value)
    for item in overrides:
        _set_dotted(tree, *_parse_override(item, "override"))
    try:
        return _build(TrainConfig, tree, "")
    except TypeError as e:  # a section given a scalar, e.g. optim: 3
        raise ConfigError(f"config: {e}") from e


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    parser = argparse.ArgumentParser(
        prog="python -m heurimentor_trainer.train", description="Train an Aquila2 model (one torchrun worker)."
    )
    default_path = os.environ.get("HEURIMENTOR_TRAIN_CONFIG", DEFAULT_CONFIG_PATH)
    parser.add_argument("--config", default=None, help=f"YAML config file (default {default_path} when it exists)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override one field (repeatable); the value is parsed as YAML",
    )
    args = parser.parse_args(argv)
    path = args.config or (default_path if Path(default_path).exists() else None)
    return load_config(path, args.overrides)
