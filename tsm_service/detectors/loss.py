"""Detectors on the training-loss and grad-norm curves (rank-averaged, one value per step); the loss is
judged against what the mixture in force predicts (``expected.py``)."""

from __future__ import annotations

import numpy as np

from tsm_service.config import DivergenceConfig, PlateauConfig, SpikeConfig
from tsm_service.detectors.base import Finding
from tsm_service.detectors.expected import ExpectedLoss, LossCurve


def _episodes(values: np.ndarray, window: int, is_bad, min_history: int, segment_start: np.ndarray | None = None):  # noqa: ANN001, ANN202
    """Yield (start, end) index ranges where ``is_bad(value, baseline)`` holds, the baseline being computed
    over the ``window`` values before the episode began (so a long spike does not raise its own bar), and
    not before the segment it began in (an LR restart or rescale re-bases it)."""
    start = None
    for i in range(len(values)):
        anchor = start if start is not None else i
        floor = int(segment_start[anchor]) if segment_start is not None else 0
        history = values[max(floor, anchor - window) : anchor]
        if len(history) < min_history:
            continue
        if is_bad(values[i], history):
            start = i if start is None else start
        elif start is not None:
            yield start, i - 1
            start = None
    if start is not None:
        yield start, len(values) - 1


def spike_threshold(config: SpikeConfig, noise: float) -> float:
    """Ratio to the expectation a step must reach to count: half way to ``factor`` (so a spike of that
    height is caught through noise), and ``noise_sigmas`` noise deviations above expectation."""
    return 1.0 + max(0.5 * (config.factor - 1.0), config.noise_sigmas * noise)


def detect_loss_spikes(curve: LossCurve, config: SpikeConfig) -> list[Finding]:
    """Loss over what the mixture in force predicts (``spike_threshold``) for ``consecutive`` steps."""
    expected = ExpectedLoss(curve, window=config.window, min_history=config.min_history)
    every = np.arange(len(curve))
    ratio, _, noise, _ = expected.judge(every, every)  # each step against its own history
    with np.errstate(invalid="ignore"):
        over_own = ratio >= 1.0 + np.maximum(0.5 * (config.factor - 1.0), config.noise_sigmas * noise)
    findings, start, judged = [], None, []
    for i in range(len(curve) + 1):
        if i < len(curve) and (start is not None or over_own[i]):
            # In an episode, every step is judged against the history before the episode began.
            e = expected.at(i, i if start is None else start)
            if e is not None and e.ratio >= spike_threshold(config, e.noise):
                start = i if start is None else start
                judged.append(e)
                continue
        if start is not None:
            if len(judged) >= config.consecutive:
                findings.append(_spike_finding(curve, start, i - 1, judged, config))
            start, judged = None, []
    return findings


def _spike_finding(curve: LossCurve, start: int, end: int, judged: list, config: SpikeConfig) -> Finding:
    steps, loss = curve.steps, curve.loss
    peak = start + int(np.argmax([e.ratio for e in judged]))
    first = judged[0]
    top = judged[peak - start]
    return Finding(
        kind="loss_spike",
        severity="critical",
        step=int(steps[start]),
        subject="loss",
        message=(
            f"loss spiked to {loss[peak]:.4g} at step {int(steps[peak])}, {top.ratio:.2f}x what the "
            f"{'mixture in force predicts' if first.mode == 'mixture' else 'trailing median gives'} "
            f"({first.expected:.4g}), for {end - start + 1} steps from step {int(steps[start])}"
        ),
        evidence={
            "baseline_mean": first.expected,
            "expected_loss": first.expected,
            "mode": first.mode,
            "factor": config.factor,
            "threshold": spike_threshold(config, first.noise),
            "noise": first.noise,
            "window": config.window,
            "shares": first.shares,
            "first_step": int(steps[start]),
            "last_step": int(steps[end]),
            "peak_step": int(steps[peak]),
            "peak_loss": float(loss[peak]),
            "peak_ratio": top.ratio,
            "steps_over": end - start + 1,
            "values": [[int(s), float(v)] for s, v in zip(steps[start : end + 1][:50], loss[start : end + 1][:50])],
        },
        bad_steps=(int(steps[start]), int(steps[end])),
        confirmed_step=int(steps[start + config.consecutive - 1]),
    )


def detect_grad_norm_runaway(
    steps: np.ndarray, grad_norm: np.ndarray, config: DivergenceConfig, segment_start: np.ndarray | None = None
) -> list[Finding]:
    """Grad norm >= ``grad_norm_factor`` x its trailing median for ``consecutive`` steps: the run is diverging.
    ``segment_start`` (``LossCurve.segment_starts``) keeps the median from reaching back past a rescale or
    LR restart."""
    findings = []
    for start, end in _episodes(
        grad_norm,
        config.window,
        lambda v, h: v >= config.grad_norm_factor * float(np.median(h)),
        min_history=max(2, config.window // 2),
        segment_start=segment_start,
    ):
        if end - start + 1 < config.consecutive:
            continue
        floor = int(segment_start[start]) if segment_start is not None else 0
        median = float(np.median(grad_norm[max(floor, start - config.window) : start]))
        findings.append(
            Finding(
                kind="divergence",
                severity="critical",
                step=int(steps[start]),
                subject="scalar/grad_norm",
                message=(
                    f"grad norm ran away to {grad_norm[end]:.4g} (trailing median {median:.4g}) for "
                    f"{end - start + 1} steps from step {int(steps[start])}"
                ),
                evidence={
                    "reason": "grad_norm_runaway",
                    "trailing_median": median,
                    "factor": config.grad_norm_factor,
                    "first_step": int(steps[start]),
                    "last_step": int(steps[end]),
                    "values": [[int(s), float(v)] for s, v in zip(steps[start : end + 1][:50], grad_norm[start : end + 1][:50])],
                },
                bad_steps=(int(steps[start]), int(steps[end])),
                confirmed_step=int(steps[start + config.consecutive - 1]),
            )
        )
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
    recent = loss[-config.window :]
    smoothed = ema(recent, config.ema_alpha)
    # Compare the smoothed level a quarter into the window (past the EMA's warm-up) with the end.
    begin = float(smoothed[config.window // 4])
    end = float(smoothed[-1])
    drop = (begin - end) / abs(begin) if begin else 0.0
    slope = float(np.polyfit(steps[-config.window :].astype(float), recent, 1)[0])
    if drop >= config.min_relative_drop:
        return None
    return Finding(
        kind="plateau",
        severity="info",
        step=int(steps[-1]),
        subject="loss",
        message=(
            f"loss plateaued: smoothed loss went {begin:.4g} -> {end:.4g} ({100 * drop:.2f}% drop, less than "
            f"{100 * config.min_relative_drop:.2f}%) over steps {int(steps[-config.window])}..{int(steps[-1])}"
        ),
        evidence={
            "smoothed_start": begin,
            "smoothed_end": end,
            "relative_drop": drop,
            "slope_per_step": slope,
            "window": config.window,
            "first_step": int(steps[-config.window]),
            "last_step": int(steps[-1]),
        },
    )
