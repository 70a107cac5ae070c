"""What the loss is expected to be (tsm_service/detectors/expected.py), on crafted curves: the shares of the
mixture in force, the segments a restart or rescale starts, and the spike detector built on them."""

from __future__ import annotations

import numpy as np

from tsm_service.config import SpikeConfig
from tsm_service.detectors import detect_loss_spikes
from tsm_service.detectors.expected import LossCurve, fit_shares

rng = np.random.default_rng(3)
N = 600
STEPS = np.arange(N)


def two_sources(noise: float = 0.02) -> dict[str, np.ndarray]:
    decay = 1 + 1.5 * np.exp(-STEPS / 150)
    return {"easy": 1.5 * decay * (1 + rng.normal(0, noise, N)), "hard": 4.0 * decay * (1 + rng.normal(0, noise, N))}


def blend(sources: dict[str, np.ndarray], easy_share: np.ndarray) -> np.ndarray:
    return easy_share * sources["easy"] + (1 - easy_share) * sources["hard"]


def test_shares_are_recovered_from_the_losses_alone():
    sources = two_sources()
    share = np.clip(0.3 + rng.normal(0, 0.03, N), 0, 1)  # rows per source drawn each step around 30/70
    matrix = np.column_stack([sources["easy"], sources["hard"]])
    fitted = fit_shares(matrix, blend(sources, share), prior=np.array([0.5, 0.5]), window=50)
    assert np.allclose(fitted[-1], [0.3, 0.7], atol=0.03) and np.allclose(fitted.sum(axis=1), 1)


def test_lr_restarts_and_rescales_cut_segments_warmup_steps_do_not():
    lr = np.minimum(1.0, (STEPS + 1) / 50) * 3e-4  # a warmup: rising every step, one segment
    lr[300:] = np.minimum(1.0, (STEPS[300:] - 299) / 50) * 3e-4  # a re-warmup from 0 at step 300
    world = np.where(STEPS < 450, 8, 4)
    starts = LossCurve(STEPS, np.ones(N), lr=lr, world_size=world).segment_starts()
    assert set(np.unique(starts)) == {0, 300, 450}
    assert starts[299] == 0 and starts[449] == 300 and starts[-1] == 450


def test_a_mixture_change_is_not_a_spike_with_or_without_per_source_losses():
    sources = two_sources()
    share = np.where(STEPS < 300, 0.8, 0.2)
    version = np.where(STEPS < 300, 1, 2)
    loss = blend(sources, share)  # x1.7 at step 300
    assert detect_loss_spikes(LossCurve(STEPS, loss, sources, version), SpikeConfig()) == []
    assert detect_loss_spikes(LossCurve(STEPS, loss, mixture_version=version), SpikeConfig()) == []
    [unannounced] = detect_loss_spikes(LossCurve(STEPS, loss), SpikeConfig())  # the version is what tells them apart
    assert unannounced.step == 300


def test_a_spike_right_after_a_mixture_change_is_found_from_per_source_losses():
    sources = two_sources()
    for values in sources.values():
        values[303:308] *= 2.0  # three steps into the new mixture
    share = np.where(STEPS < 300, 0.8, 0.2)
    version = np.where(STEPS < 300, 1, 2)
    loss = blend(sources, share)
    [spike] = detect_loss_spikes(LossCurve(STEPS, loss, sources, version), SpikeConfig())
    assert (spike.step, spike.bad_steps, spike.evidence["mode"]) == (303, (303, 307), "mixture")
    # From the blended loss alone the new mixture has too little history yet: not judged, not mistaken.
    assert detect_loss_spikes(LossCurve(STEPS, loss, mixture_version=version), SpikeConfig()) == []


def test_the_bar_rises_with_the_noise():
    quiet, noisy = (np.full(N, 2.0) * (1 + rng.normal(0, sigma, N)) for sigma in (0.01, 0.12))
    for loss in (quiet, noisy):
        loss[400:404] *= 1.4
    config = SpikeConfig()
    [found] = detect_loss_spikes(LossCurve(STEPS, quiet), config)
    assert found.step == 400 and found.evidence["threshold"] == 1.25  # half way to factor 1.5
    assert detect_loss_spikes(LossCurve(STEPS, noisy), config) == []  # 1.4x is inside 3.5 noise deviations
