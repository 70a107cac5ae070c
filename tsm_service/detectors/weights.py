"""The report's weight signal: how fast the per-layer weight-std trace moves per billion tokens."""

from __future__ import annotations

import numpy as np

from tsm_service.config import WeightChangeConfig
from tsm_service.detectors.base import Finding


def trace_distance_rates(tokens: np.ndarray, layer_std: np.ndarray) -> np.ndarray:
    """Distance between consecutive per-layer std traces (L2 over layers) per 1B tokens.

    ``layer_std`` is (reports, layers); ``tokens`` the tokens seen at each report. Returns reports-1 rates.
    """
    distance = np.linalg.norm(np.diff(layer_std, axis=0), axis=1)
    gigatokens = np.diff(tokens.astype(float)) / 1e9
    return np.where(gigatokens > 0, distance / np.maximum(gigatokens, 1e-12), np.nan)


def detect_weight_change(
    *, steps: np.ndarray, tokens: np.ndarray, layers: list[str], layer_std: np.ndarray, config: WeightChangeConfig
) -> list[Finding]:
    """Reports where the trace moved >= ``factor`` x the median rate of the previous ``window`` reports."""
    if len(steps) < 3:
        return []
    rates = trace_distance_rates(tokens, layer_std)
    findings = []
    for i in range(1, len(rates)):
        history = rates[max(0, i - config.window) : i]
        history = history[np.isfinite(history)]
        if len(history) < min(config.window, 2) or not np.isfinite(rates[i]):
            continue
        median = float(np.median(history))
        if median <= 0 or rates[i] < config.factor * median:
            continue
        delta = np.abs(layer_std[i + 1] - layer_std[i])
        top = np.argsort(delta)[::-1][:5]
        step = int(steps[i + 1])
        findings.append(
            Finding(
                kind="weight_change_anomaly",
                severity="warning",
                step=step,
                subject="weights",
                message=(
                    f"per-layer weight-std trace moved {rates[i]:.4g} per 1B tokens at step {step}, "
                    f"{rates[i] / median:.1f}x the trailing median {median:.4g}"
                ),
                evidence={
                    "rate_per_gigatoken": float(rates[i]),
                    "trailing_median": median,
                    "factor": config.factor,
                    "from_step": int(steps[i]),
                    "to_step": step,
                    "top_layers": [
                        {"layer": layers[j], "std_before": float(layer_std[i][j]), "std_after": float(layer_std[i + 1][j])} for j in top
                    ],
                },
            )
        )
    return findings
