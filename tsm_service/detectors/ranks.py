"""Detectors on the job's pace: a stalled job and a rank slower than the others."""

from __future__ import annotations

import numpy as np

from tsm_service.config import StallConfig, StragglerConfig
from tsm_service.detectors.base import Finding


def detect_stall(*, last_step: int | None, last_step_time: float | None, now: float, config: StallConfig) -> Finding | None:
    """No step for ``config.seconds``."""
    if last_step is None or last_step_time is None:
        return None
    quiet = now - last_step_time
    if quiet < config.seconds:
        return None
    return Finding(
        kind="stall",
        severity="critical",
        step=last_step,
        subject="step",
        message=f"no step for {quiet:.0f} s (limit {config.seconds:.0f} s); last step {last_step}",
        evidence={"last_step": last_step, "last_step_time": last_step_time, "seconds_quiet": quiet, "limit_seconds": config.seconds},
    )


def step_time_skew(step_times: dict[int, np.ndarray]) -> tuple[float, float] | None:
    """(median step time over ranks, slowest rank's median / that median) of the given window."""
    medians = {rank: float(np.median(times)) for rank, times in step_times.items() if len(times)}
    if not medians:
        return None
    overall = float(np.median(list(medians.values())))
    return overall, (max(medians.values()) / overall if overall > 0 else 1.0)


def detect_stragglers(*, step: int, step_times: dict[int, np.ndarray], config: StragglerConfig) -> list[Finding]:
    """Ranks whose median step time over the window is >= ``factor`` x the median over all ranks."""
    medians = {rank: float(np.median(times[-config.window :])) for rank, times in step_times.items() if len(times)}
    if len(medians) < config.min_ranks:
        return []
    overall = float(np.median(list(medians.values())))
    if overall <= 0:
        return []
    return [
        Finding(
            kind="straggler",
            severity="warning",
            step=step,
            subject=f"rank/{rank}",
            message=(
                f"rank {rank} takes {median:.3g} s per step, {median / overall:.2f}x the median {overall:.3g} s over {len(medians)} ranks"
            ),
            evidence={
                "rank": rank,
                "rank_median_seconds": median,
                "median_seconds": overall,
                "ratio": median / overall,
                "factor": config.factor,
                "window": config.window,
                "rank_medians": {str(r): m for r, m in sorted(medians.items())},
            },
        )
        for rank, median in sorted(medians.items())
        if median >= config.factor * overall
    ]
