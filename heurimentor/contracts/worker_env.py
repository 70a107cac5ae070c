"""The environment the operator gives each worker pod, and the trainer reads.

``PET_*`` is Kubeflow's PyTorchJob contract: torchrun reads these, so a custom command works
unchanged. ``HEURIMENTOR_*`` are ours. The rollback range travels as ``"FROM-TO"`` (inclusive
steps) in ``HEURIMENTOR_ROLLBACK_SKIP_STEPS`` and in the job annotation
``heurimentor.io/rollback-skip-steps``; ``format_step_range`` writes it, ``parse_step_range`` reads
it, in every process.
"""

from __future__ import annotations

PET_NNODES = "PET_NNODES"
PET_NPROC_PER_NODE = "PET_NPROC_PER_NODE"
PET_RDZV_BACKEND = "PET_RDZV_BACKEND"
PET_RDZV_ENDPOINT = "PET_RDZV_ENDPOINT"
PET_RDZV_ID = "PET_RDZV_ID"
PET_MAX_RESTARTS = "PET_MAX_RESTARTS"
PET_RDZV_CONF = "PET_RDZV_CONF"

HEURIMENTOR_JOB = "HEURIMENTOR_JOB"
HEURIMENTOR_NAMESPACE = "HEURIMENTOR_NAMESPACE"
HEURIMENTOR_POOL = "HEURIMENTOR_POOL"
HEURIMENTOR_REPLICA_INDEX = "HEURIMENTOR_REPLICA_INDEX"
HEURIMENTOR_ATTEMPT = "HEURIMENTOR_ATTEMPT"
HEURIMENTOR_ACCELERATOR = "HEURIMENTOR_ACCELERATOR"
HEURIMENTOR_POD_NAME = "HEURIMENTOR_POD_NAME"
# Downward API: the pod rank 0 annotates with its progress.
POD_NAME = "POD_NAME"
POD_NAMESPACE = "POD_NAMESPACE"
# This attempt restarts from the newest checkpoint at or before this step ...
HEURIMENTOR_ROLLBACK_TO_STEP = "HEURIMENTOR_ROLLBACK_TO_STEP"
# ... and skips the data of these steps ("FROM-TO", inclusive).
HEURIMENTOR_ROLLBACK_SKIP_STEPS = "HEURIMENTOR_ROLLBACK_SKIP_STEPS"


def format_step_range(first: int, last: int) -> str:
    return f"{first}-{last}"


def parse_step_range(raw: str) -> tuple[int, int]:
    """``"FROM-TO"`` (steps, FROM <= TO; spaces around either allowed) as a pair; ValueError otherwise."""
    first, _, last = raw.partition("-")
    first, last = first.strip(), last.strip()
    if not (first.isdigit() and last.isdigit() and int(first) <= int(last)):
        raise ValueError(f"{raw!r} is not FROM-TO (steps, FROM <= TO)")
    return int(first), int(last)


def parse_step(raw: str) -> int:
    """A step number (an integer >= 0); ValueError otherwise."""
    try:
        step = int(raw)
    except ValueError:
        step = -1
    if step < 0:
        raise ValueError(f"{raw!r} is not a step number (an integer >= 0)")
    return step
