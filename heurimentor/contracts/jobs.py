"""Training job names as every process sees them: the operator's job id (``<namespace>.<name>``),
the trainer's ``job`` field and the TSM's ``/v1/jobs/{job}`` path all match this pattern."""

from __future__ import annotations

JOB_NAME_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,251}[a-z0-9])?$"
