"""Each detector on crafted series: it fires where the trouble is, with evidence, and stays quiet otherwise."""

from __future__ import annotations

import numpy as np

from tsm_service.config import DivergenceConfig, PlateauConfig, SpikeConfig, StallConfig, StragglerConfig, WeightChangeConfig
from tsm_service.detectors import (
    detect_grad_norm_runaway,
    detect_loss_spikes,
    detect_plateau,
    detect_stall,
    detect_stragglers,
    detect_weight_change,
)
from tsm_service.detectors.expected import LossCurve
from tsm_service.detectors.weights import trace_distance_rates

rng = np.random.default_rng(0)


def _decaying_loss(n: int, noise: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    steps = np.arange(n) * 10
    return steps, 2.0 + 3.0 * np.exp(-np.arange(n) / 300) + rng.normal(0, noise, n)


def test_loss_spike_found_with_its_extent_and_a_rollback_range():
    steps, loss = _decaying_loss(400)
    loss[200:206] *= 2.5
    findings = detect_loss_spikes(LossCurve(steps, loss), SpikeConfig(window=50, factor=1.5, consecutive=3))
    assert len(findings) == 1
    spike = findings[0]
    assert (spike.step, spike.bad_steps, spike.confirmed_at) == (2000, (2000, 2050), 2020)
    assert spike.evidence["steps_over"] == 6 and spike.evidence["peak_loss"] > 1.5 * spike.evidence["baseline_mean"]


def test_short_blip_and_noise_are_not_spikes():
    steps, loss = _decaying_loss(400, noise=0.05)
    loss[100:102] *= 3  # two steps: below consecutive=3
    assert detect_loss_spikes(LossCurve(steps, loss), SpikeConfig(window=50, factor=1.5, consecutive=3)) == []
    # The same blip counts when one step is enough: the threshold is the job's to set.
    assert len(detect_loss_spikes(LossCurve(steps, loss), SpikeConfig(window=50, factor=1.5, consecutive=1))) == 1


def test_long_spike_does_not_raise_its_own_baseline():
    steps, loss = _decaying_loss(300)
    loss[150:250] = 9.0  # 100 steps, twice the window
    [spike] = detect_loss_spikes(LossCurve(steps, loss), SpikeConfig(window=50, factor=1.5, consecutive=3))
    assert spike.bad_steps == (1500, 2490)


def test_grad_norm_runaway_is_divergence():
    steps = np.arange(200)
    grad = 1.0 + rng.normal(0, 0.05, 200)
    quiet = detect_grad_norm_runaway(steps, grad, DivergenceConfig())
    grad[150:] = np.geomspace(5, 1e4, 50)
    [finding] = detect_grad_norm_runaway(steps, grad, DivergenceConfig(grad_norm_factor=10, consecutive=2))
    assert quiet == []
    assert finding.kind == "divergence" and finding.evidence["reason"] == "grad_norm_runaway"
    assert finding.step == int(np.argmax(grad >= 10))  # first step over 10x the median (~1)


def test_plateau_on_flat_loss_not_on_falling_loss():
    steps = np.arange(300)
    falling = 5.0 * np.exp(-steps / 100) + 1.0 + rng.normal(0, 0.01, 300)
    flat = np.full(300, 2.5) + rng.normal(0, 0.01, 300)
    config = PlateauConfig(window=200, ema_alpha=0.1, min_relative_drop=0.005)
    assert detect_plateau(steps, falling, config) is None
    plateau = detect_plateau(steps, flat, config)
    assert plateau is not None and plateau.step == 299 and abs(plateau.evidence["relative_drop"]) < 0.005
    assert detect_plateau(steps[:100], flat[:100], config) is None  # not enough history to judge


def test_stall_after_the_configured_quiet_time():
    config = StallConfig(seconds=600)
    assert detect_stall(last_step=10, last_step_time=1000.0, now=1599.0, config=config) is None
    stall = detect_stall(last_step=10, last_step_time=1000.0, now=1700.0, config=config)
    assert stall is not None and stall.step == 10 and stall.evidence["seconds_quiet"] == 700.0
    assert detect_stall(last_step=None, last_step_time=None, now=1e9, config=config) is None


def test_straggler_rank_found_others_not():
    times = {rank: 1.0 + rng.normal(0, 0.02, 20) for rank in range(8)}
    assert detect_stragglers(step=100, step_times=times, config=StragglerConfig()) == []
    times[5] = times[5] * 2.0
    [finding] = detect_stragglers(step=100, step_times=times, config=StragglerConfig(factor=1.5))
    assert finding.subject == "rank/5" and 1.9 < finding.evidence["ratio"] < 2.1
    assert detect_stragglers(step=100, step_times={0: np.array([9.0])}, config=StragglerConfig()) == []


def test_weight_change_rate_is_per_billion_tokens():
    tokens = np.array([0, 1e9, 3e9])
    std = np.array([[1.0, 1.0], [1.0, 1.3], [1.4, 1.3]])  # moves 0.3 per 1B tokens, then 0.4 over 2B tokens
    assert np.allclose(trace_distance_rates(tokens, std), [0.3, 0.2])


def test_weight_change_anomaly_names_the_layers():
    reports = 30
    steps = np.arange(reports) * 100
    tokens = steps * 1_000_000
    layers = [f"layers.{i}" for i in range(4)]
    std = 0.02 + np.cumsum(rng.normal(1e-5, 1e-6, (reports, 4)), axis=0)
    assert detect_weight_change(steps=steps, tokens=tokens, layers=layers, layer_std=std, config=WeightChangeConfig()) == []
    std[20:, 2] += 0.01  # layer 2 jumps between reports 19 and 20
    [finding] = detect_weight_change(
        steps=steps, tokens=tokens, layers=layers, layer_std=std, config=WeightChangeConfig(window=10, factor=5)
    )
    assert finding.step == 2000 and finding.evidence["top_layers"][0]["layer"] == "layers.2"
    assert finding.evidence["rate_per_gigatoken"] > 5 * finding.evidence["trailing_median"]
