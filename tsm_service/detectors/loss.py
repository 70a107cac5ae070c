"""Detectors on the training-loss and grad-norm curves (rank-averaged, one value per step)."""

from __future__ import annotations

import numpy as np

from tsm_service.config import DivergenceConfig, PlateauConfig, SpikeConfig
from tsm_service.detectors.base import Finding


def _episodes(values: np.ndarray, window: int, is_bad, min_history: int):  # noqa: ANN001, ANN202
    """Yield (start, end) index ranges where ``is_bad(value, baseline)`` holds, the baseline being computed
    over the ``window`` values before the episode began (so a long spike does not raise its own bar)."""
    start = None
    for i in range(len(values)):
        anchor = start if start is not None else i
        history = values[max(0, anchor - window):anchor]
        if len(history) < min_history:
            continue
        if is_bad(values[i], history):
            start = i if start is None else start
        elif start is not None:
            yield start, i - 1
            start = None
    if start is not None:
        yield start, len(values) - 1


def detect_loss_spikes(steps: np.ndarray, loss: np.ndarray, config: SpikeConfig) -> list[Finding]:
    """Loss >= ``factor`` x the trailing-window mean for at least ``consecutive`` steps (llm-foundry / Megatron style)."""
    findings = []
    for start, end in _episodes(loss, config.window, lambda v, h: v >= config.factor * float(np.mean(h)),
                                min_history=max(2, config.window // 2)):
        if end - start + 1 < config.consecutive:
            continue
        baseline = float(np.mean(loss[max(0, start - config.window):start]))
        peak = int(start + np.argmax(loss[start:end + 1]))
        findings.append(Finding(
            kind="loss_spike", severity="critical", step=int(steps[start]), subject="loss",
            message=(f"loss spiked to {loss[peak]:.4g} at step {int(steps[peak])}, {loss[peak] / baseline:.2f}x the "
                     f"trailing mean {baseline:.4g}, for {end - start + 1} steps from step {int(steps[start])}"),
            evidence={"baseline_mean": baseline, "factor": config.factor, "window": config.window,
                      "first_step": int(steps[start]), "last_step": int(steps[end]), "peak_step": int(steps[peak]),
                      "peak_loss": float(loss[peak]), "steps_over": end - start + 1,
                      "values": [[int(s), float(v)] for s, v in zip(steps[start:end + 1][:50], loss[start:end + 1][:50])]},
            bad_steps=(int(steps[start]), int(steps[end])),
            confirmed_step=int(steps[start + config.consecutive - 1])))
    return findings


def detect_grad_norm_runaway(steps: np.ndarray, grad_norm: np.ndarray, config: DivergenceConfig) -> list[Finding]:
    """Grad norm >= ``grad_norm_factor`` x its trailing median for ``consecutive`` steps: the run is diverging."""
    findings = []
    for start, end in _episodes(grad_norm, config.window,
                                lambda v, h: v >= config.grad_norm_factor * float(np.median(h)),
                                min_history=max(2, config.window // 2)):
        if end - start + 1 < config.consecutive:
            continue
        median = float(np.median(grad_norm[max(0, start - config.window):start]))
        findings.append(Finding(
            kind="divergence", severity="critical", step=int(steps[start]), subject="scalar/grad_norm",
            message=(f"grad norm ran away to {grad_norm[end]:.4g} (trailing median {median:.4g}) for "
                     f"{end - start + 1} steps from step {int(steps[start])}"),
            evidence={"reason": "grad_norm_runaway", "trailing_median": median, "factor": config.grad_norm_factor,
                      "first_step": int(steps[start]), "last_step": int(steps[end]),
                      "values": [[int(s), float(v)] for s, v in zip(steps[start:end + 1][:50], grad_norm[start:end + 1][:50])]},
            bad_steps=(int(steps[start]), int(steps[end])),
            confirmed_step=int(steps[start + config.consecutive - 1])))
    return findings


def ema(values: np.ndarray, alpha: float) -> np.ndarray:
    smoothed = np.empty_like(values, dtype=float)
    acc = float(values[0])
    for i, v in enumerate(values):
        acc = alpha * float(v) + (1 - alpha) * acc
        smoothed[i] = acc
    return smoothed


def detect_plateau(steps: np.ndarray, loss: np.ndarray, config: PlateauConfig) -> Finding | None:
    """The smoothed loss fell by less than ``min_relative_drop`` over the last ``window`` steps (the report's
    cue to change the data). Judged at the latest step only."""
    if len(loss) < config.window:
        return None
    recent = loss[-config.window:]
    smoothed = ema(recent, config.ema_alpha)
    # Compare the smoothed level a quarter into the window (past the EMA's warm-up) with the end.
    begin = float(smoothed[config.window // 4])
    end = float(smoothed[-1])
    drop = (begin - end) / abs(begin) if begin else 0.0
    slope = float(np.polyfit(steps[-config.window:].astype(float), recent, 1)[0])
    if drop >= config.min_relative_drop:
        return None
    return Finding(
        kind="plateau", severity="info", step=int(steps[-1]), subject="loss",
        message=(f"loss plateaued: smoothed loss went {begin:.4g} -> {end:.4g} ({100 * drop:.2f}% drop, less than "
                 f"{100 * config.min_relative_drop:.2f}%) over steps {int(steps[-config.window])}..{int(steps[-1])}"),
        evidence={"smoothed_start": begin, "smoothed_end": end, "relative_drop": drop, "slope_per_step": slope,
                  "window": config.window, "first_step": int(steps[-config.window]), "last_step": int(steps[-1])})
