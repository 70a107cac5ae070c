"""Checkpoints with ``torch.distributed.checkpoint`` (DCP): resumable on any world size.

Layout under ``checkpoint.dir``::

    step-00000100/           a complete checkpoint: DCP files (model + optimizer, resharded on load),
        trainer_state.json   TrainState: step, model shape, LR schedule, data-sampler state (world-size independent)
        rng.pt               every rank's RNG states
    step-00000200.partial/   being written (or left by a crash): never read
    latest                   the name of the newest complete step folder, replaced atomically
    rolled-back-<time>/      complete checkpoints newer than a rollback's step, moved aside (never deleted)
    rollbacks.json           the rollbacks applied here (each applied once, see ``rollback``)

A save writes into ``step-N.partial``, renames it to ``step-N`` once every rank finished, and only
then replaces ``latest`` (write a temporary file, fsync, rename): a crash at any point leaves the
previous ``latest`` intact. The state dicts come from ``get_state_dict`` so keys are the model's own
(no ``module.``/``_orig_mod``/checkpoint-wrapper prefixes) and FSDP2 shards or DDP replicas load
into any other world size.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from heurimentor.fsutil import atomic_write_bytes, fsync_dir
from heurimentor_trainer.model import ModelArgs

log = logging.getLogger(__name__)

LATEST = "latest"
ROLLBACKS_FILE = "rollbacks.json"
STATE_FILE = "trainer_state.json"
RNG_FILE = "rng.pt"
_STEP_DIR = re.compile(r"^step-(\d{8})$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be resumed here; the message names the folder and the field."""


@dataclass
class TrainState:
    """Exactly what a checkpoint's ``trainer_state.json`` holds besides the DCP model/optimizer files."""

    step: int = 0
    tokens_seen: int = 0
    sampler: dict = field(default_factory=dict)  # MixtureSampler.state_dict(): world-size independent
    data_skips: list[str] = field(default_factory=list)  # rollback data skips applied (see train.pending_data_skip)
    world_size: int = 1  # when written; a resume may run on any other
    model_args: dict = field(default_factory=dict)  # checked against the configured model before any load
    global_batch: int = 0
    seq_len: int = 0
    lr_schedule: dict = field(default_factory=dict)  # {base, warmup, total, min_ratio}

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()

    @classmethod
    def from_dict(cls, raw: dict, where: Path) -> TrainState:
        known = {f.name for f in fields(cls)}
        if not isinstance(raw, dict) or "step" not in raw:
            raise CheckpointError(f"checkpoint {where}: {STATE_FILE} has no step")
        # Fields written by a later version are ignored; ones an earlier version lacked keep their defaults.
        return cls(**{k: v for k, v in raw.items() if k in known})


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def check_model_args(saved: dict, current: ModelArgs, where: Path) -> None:
    """Refuse a checkpoint of another model shape, naming every field that differs."""
    differ = [f"{k}={saved.get(k)!r} (config has {v!r})" for k, v in asdict(current).items() if saved.get(k) != v]
    if differ:
        raise CheckpointError(f"checkpoint {where}: model shape differs from the configured model: {', '.join(differ)}")


class CheckpointManager:
    def __init__(self, folder: str | os.PathLike, *, keep: int):
        self.folder = Path(folder)
        self.keep = keep

    def step_dir(self, step: int) -> Path:
        return self.folder / f"step-{step:08d}"

    def latest(self) -> Path | None:
        """The newest complete checkpoint, by the ``latest`` pointer (never a half-written one)."""
        pointer = self.folder / LATEST
        if not pointer.exists():
            return None
        target = self.folder / pointer.read_text().strip()
        if not (target / STATE_FILE).exists():
            raise CheckpointError(f"checkpoint {pointer}: points to {target}, which has no {STATE_FILE}")
        return target

    def rollback(self, to_step: int, *, request: str) -> Path | None:
        """Make the newest complete checkpoint at or before ``to_step`` the one to resume from.

        Newer complete checkpoints move into ``rolled-back-<UTC time>/`` (never deleted: the run can
        be inspected or restored by hand). Applied once per ``request``: the operator keeps the
        rollback in the env of every pod of that attempt, so a torchrun restart or a replaced pod
        of the same attempt must resume from its own newer checkpoints, not roll back again.
        Rank 0 only, before any rank reads ``latest``. Returns the checkpoint to resume from
        (None: no checkpoint that old, training starts over from step 0).
        """
        record_path = self.folder / ROLLBACKS_FILE
        try:
            records = json.loads(record_path.read_text()) if record_path.exists() else []
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"checkpoint {record_path}: cannot read the applied rollbacks: {e}") from e
        if any(r.get("request") == request for r in records):
            log.info("rollback already applied; resuming from the newest checkpoint", extra={"request": request, "to_step": to_step})
            return self.latest()
        complete = (
            sorted(p for p in self.folder.iterdir() if _STEP_DIR.match(p.name) and (p / STATE_FILE).exists())
            if self.folder.exists()
            else []
        )
        target = next((p for p in reversed(complete) if int(_STEP_DIR.match(p.name).group(1)) <= to_step), None)
        newer = [p for p in complete if int(_STEP_DIR.match(p.name).group(1)) > to_step]
        aside = None
        if newer:
            aside = self.folder / time.strftime("rolled-back-%Y%m%dT%H%M%SZ", time.gmtime())
            aside.mkdir()  # fails rather than merge into an earlier rollback's folder of the same second
            for path in newer:
                os.replace(path, aside / path.name)
            fsync_dir(aside)
        if target:
            atomic_write_bytes(self.folder / LATEST, target.name.encode())
        elif (self.folder / LATEST).exists():
            os.remove(self.folder / LATEST)
            fsync_dir(self.folder)
        records.append(
            {
                "request": request,
                "to_step": to_step,
                "resume_from": target.name if target else None,
                "moved": [p.name for p in newer],
                "moved_to": aside.name if aside else None,
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(record_path, json.dumps(records, indent=1).encode())
        log.warning("rolling back", extra={**records[-1], "folder": str(self.folder)})
        return target

    def save(self, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, trainer_state: TrainState) -> Path:
        """Collective: every rank calls it. Returns the final folder."""
        final, partial = self.step_dir(step), self.step_dir(step).with_name(self.step_dir(step).name + ".partial")
        if _rank() == 0:
            self.folder.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(partial, ignore_errors=True)  # left by a crash while writing this step
        _barrier()
        model_sd, optim_sd = get_state_dict(model, optimizer)
        dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(partial))
        rngs = [None] * dist.get_world_size() if dist.is_initialized() else [None]
        if dist.is_initialized():
            dist.all_gather_object(rngs, rng_state())
        else:
            rngs = [rng_state()]
        if _rank() == 0:
            torch.save(rngs, partial / RNG_FILE)
            atomic_write_bytes(partial / STATE_FILE, trainer_state.to_json())
            if final.exists():  # the same step saved again after a resume: the new one replaces it
                shutil.rmtree(final)
            os.replace(partial, final)
            fsync_dir(self.folder)
            atomic_write_bytes(self.folder / LATEST, final.name.encode())
            self._retain(final)
            log.info("checkpoint saved", extra={"step": step, "path": str(final)})
        _barrier()
        return final

    def _retain(self, latest: Path) -> None:
        complete = sorted(p for p in self.folder.iterdir() if _STEP_DIR.match(p.name))
        doomed = [p for p in complete[: max(0, len(complete) - self.keep)] if p != latest]
        doomed += [p for p in self.folder.glob("step-*.partial")]
        for path in doomed:
            shutil.rmtree(path, ignore_errors=True)
        if doomed:
            log.info("old checkpoints removed", extra={"paths": [p.name for p in doomed]})

    def read_state(self, folder: Path, model_args: ModelArgs) -> TrainState:
        """The trainer state of ``folder``, checked against the configured model before any load."""
        try:
            raw = json.loads((folder / STATE_FILE).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"checkpoint {folder}: cannot read {STATE_FILE}: {e}") from e
        state = TrainState.from_dict(raw, folder)
        check_model_args(state.model_args, model_args, folder)
        return state

    def load(self, folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *, seed: int) -> None:
        """Collective: load model + optimizer (resharded to this world size) and this rank's RNG."""
        model_sd, optim_sd = get_state_dict(model, optimizer)
        state = {"model": model_sd, "optim": optim_sd}
        try:
            dcp.load(state, checkpoint_id=str(folder))
        except Exception as e:  # DCP raises CheckpointException carrying each rank's failure
            raise CheckpointError(f"checkpoint {folder}: cannot load model/optimizer: {e}") from e
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
        rngs = torch.load(folder / RNG_FILE, weights_only=False)
        rank = _rank()
        if rank < len(rngs):
            set_rng_state(rngs[rank])
        else:  # a rank that did not exist when the checkpoint was written
            seed_everything(seed + rank + 1_000_003 * len(rngs))
        log.info("checkpoint loaded", extra={"path": str(folder), "ranks_then": len(rngs)})


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
