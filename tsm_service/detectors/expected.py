"""What the training loss is expected to be at a step, given the changes the platform makes on purpose.

The blended loss a trainer reports is the token-weighted mean of its per-source losses, so a mixture
change (a person's PUT, or the TSM's own policy) moves it while nothing is wrong. With per-source
losses, a step is judged by

    ratio(t) = sum_s w_s L_s(t) / sum_s w_s b_s

where ``b_s`` is source s's trailing median and ``w`` the source shares the mixture in force realises,
fitted from the identity ``loss(t) = sum_s w_s(t) L_s(t)`` over the steps of the current mixture version.
A change of weights cancels out; a spike (on every source, or on a heavily weighted one) does not,
even on the first steps of a new mixture. Without per-source losses the blended loss is compared with
its own trailing median, and a mixture version change re-bases that median (no judgement until the new
version has ``min_history`` steps).

Other changes made on purpose start a new segment, whose statistics do not reach back before it: an LR
schedule restart (the LR rises after not rising) and a rescale (the number of ranks reporting changes:
batch and noise change with it). A resume after a rollback reaches the detectors as one timeline (the
TSM drops the abandoned steps, see ``crud/timeline.py``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

LR_RISE = 0.01  # an LR step up by more than 1 % after a step that did not rise: a schedule (re)start


@dataclass(frozen=True)
class LossCurve:
    """One job's training curve, one value per step (rank-averaged), with what explains its level.

    ``source_losses`` maps a source to its per-step loss aligned with ``steps`` (NaN where the step had no
    tokens of it); ``mixture_version``, ``lr`` and ``world_size`` are per-step too (-1 / NaN / 0: unknown).
    """

    steps: np.ndarray
    loss: np.ndarray
    source_losses: dict[str, np.ndarray] = field(default_factory=dict)
    mixture_version: np.ndarray | None = None
    lr: np.ndarray | None = None
    world_size: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.steps)

    def versions(self) -> np.ndarray:
        return np.full(len(self), -1) if self.mixture_version is None else self.mixture_version

    def segment_starts(self) -> np.ndarray:
        """Index of the segment each step belongs to starts at (LR restarts and rescales cut segments)."""
        cut = np.zeros(len(self), dtype=bool)
        if self.lr is not None and len(self) > 1:
            lr = np.nan_to_num(self.lr, nan=0.0)
            rising = np.zeros(len(self), dtype=bool)
            rising[1:] = (lr[1:] > lr[:-1] * (1 + LR_RISE)) & (lr[:-1] > 0)
            restart = np.flatnonzero(rising[1:] & ~rising[:-1]) + 1
            restart = restart[restart >= 2]  # a warmup from the first step has no history to cut
            # A restart that began with a drop (a re-warmup from ~0) starts at the drop.
            dropped = lr[restart - 1] < lr[restart - 2] * (1 - LR_RISE)
            cut[np.where(dropped, restart - 1, restart)] = True
        if self.world_size is not None and len(self) > 1:
            ws = self.world_size
            cut[1:] |= (ws[1:] != ws[:-1]) & (ws[1:] > 0) & (ws[:-1] > 0)
        return _starts(cut)

    def segment_starts_for(self, steps: np.ndarray) -> np.ndarray:
        """The segments as indices into another series' ``steps`` (the grad norm's, say)."""
        if not len(self) or not len(steps):
            return np.zeros(len(steps), dtype=int)
        starts = self.steps[self.segment_starts()]
        position = np.clip(np.searchsorted(self.steps, steps, side="right") - 1, 0, len(self) - 1)
        return np.where(steps >= self.steps[0], np.searchsorted(steps, starts[position]), 0)

    def version_starts(self) -> np.ndarray:
        """Index where each step's run of the same mixture version starts."""
        v = self.versions()
        cut = np.zeros(len(self), dtype=bool)
        cut[1:] = v[1:] != v[:-1]
        return _starts(cut)


def _starts(cut: np.ndarray) -> np.ndarray:
    index = np.where(cut, np.arange(len(cut)), 0)
    return np.maximum.accumulate(index) if len(cut) else index


def fit_shares(sources: np.ndarray, loss: np.ndarray, prior: np.ndarray, window: int) -> np.ndarray:
    """Per step, the source shares ``w`` (>= 0, summing to 1) that best explain ``loss = sources @ w`` over
    the last ``window`` steps up to it (steps of one mixture version).

    ``sources`` is steps x sources (NaN: no tokens of that source at that step, so it contributes 0). A
    small pull towards ``prior`` (the previous mixture's shares) makes the first steps of a new mixture
    well posed when there are fewer steps than sources.
    """
    x = np.nan_to_num(sources, nan=0.0)
    y = np.where(np.isfinite(loss), loss, 0.0)
    x = np.where(np.isfinite(loss)[:, None], x, 0.0)
    n, k = x.shape
    scale = float(np.mean(x * x)) or 1.0
    # Sliding-window normal equations from cumulative sums, solved for every step at once.
    outer = np.concatenate([np.zeros((1, k, k)), np.cumsum(x[:, :, None] * x[:, None, :], axis=0)])
    cross = np.concatenate([np.zeros((1, k)), np.cumsum(x * y[:, None], axis=0)])
    upper = np.arange(1, n + 1)
    lower = np.maximum(0, upper - window)
    ones = 100.0 * scale  # sum to one, weighted far above one step
    ridge = 1e-2 * scale
    a = outer[upper] - outer[lower] + ones * np.ones((k, k)) + ridge * np.eye(k)
    b = cross[upper] - cross[lower] + ones + ridge * prior
    w = np.clip(np.linalg.solve(a, b[:, :, None])[:, :, 0], 0.0, None)
    total = w.sum(axis=1, keepdims=True)
    return np.where(total > 0, w / np.where(total > 0, total, 1.0), prior)


@dataclass(frozen=True)
class Expectation:
    """How one step compares with what was expected: ``ratio`` (1 = as expected) and the relative noise
    of the history it was judged against; ``mode`` is "mixture" (per-source) or "blended"."""

    ratio: float
    expected: float
    noise: float
    mode: str
    shares: dict[str, float] | None = None


def _windows(values: np.ndarray, floor: np.ndarray, window: int) -> np.ndarray:
    """Row ``a``: ``values[a - window:a]``, NaN before ``floor[a]`` (the history of anchor step ``a``)."""
    n = len(values)
    padded = np.concatenate([np.full(window, np.nan), values.astype(float)])
    view = np.lib.stride_tricks.sliding_window_view(padded, window)[:n]
    index = np.arange(n)[:, None] - window + np.arange(window)[None, :]
    return np.where(index >= floor[:, None], view, np.nan)


def _nan_median(values: np.ndarray, axis: int = 1) -> np.ndarray:
    """Median along ``axis`` ignoring NaN (NaN where all are); np.nanmedian loops over rows, this sorts once."""
    ordered = np.sort(np.moveaxis(values, axis, -1), axis=-1)  # NaN sort last
    count = np.isfinite(ordered).sum(axis=-1)
    low = np.take_along_axis(ordered, np.maximum(count - 1, 0)[..., None] // 2, axis=-1)[..., 0]
    high = np.take_along_axis(ordered, (count // 2)[..., None], axis=-1)[..., 0] if ordered.shape[-1] else low
    high = np.where(count // 2 < ordered.shape[-1], high, low)
    return np.where(count > 0, (low + high) / 2, np.nan)


def _row_noise(ratios: np.ndarray) -> np.ndarray:
    """Per row of ratios (NaN: absent): relative step-to-step noise, the MAD of the log ratios about their
    linear trend (a falling loss is not noise). Rows with fewer than 4 values get 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        logs = np.log(np.where(ratios > 0, ratios, np.nan))
    present = np.isfinite(logs)
    count = present.sum(axis=1)
    x = np.where(present, np.arange(ratios.shape[1], dtype=float)[None, :], 0.0)
    y = np.where(present, logs, 0.0)
    safe = np.maximum(count, 1)
    xc = np.where(present, x - (x.sum(axis=1) / safe)[:, None], 0.0)
    yc = np.where(present, y - (y.sum(axis=1) / safe)[:, None], 0.0)
    sxx = (xc * xc).sum(axis=1)
    slope = np.where(sxx > 0, (xc * yc).sum(axis=1) / np.where(sxx > 0, sxx, 1.0), 0.0)
    residual = np.where(present, yc - slope[:, None] * xc, np.nan)
    centre = _nan_median(residual)
    mad = _nan_median(np.abs(residual - centre[:, None]))
    return np.where(count >= 4, 1.4826 * np.nan_to_num(mad), 0.0)


class ExpectedLoss:
    """Judges steps of a ``LossCurve`` against a history that ends at an anchor step (the step itself, or
    the start of an episode in progress, so a long spike does not raise its own bar). The history of every
    possible anchor is summarised up front, so judging a step is a few multiplications."""

    def __init__(self, curve: LossCurve, *, window: int, min_history: int):
        self.curve = curve
        min_history = max(4, min_history)
        segment = curve.segment_starts()
        blended_floor = np.maximum(segment, curve.version_starts())
        self.names = sorted(curve.source_losses)
        self.matrix = (
            np.column_stack([curve.source_losses[n] for n in self.names]).astype(float) if self.names else np.empty((len(curve), 0))
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows: no history yet
            history = _windows(curve.loss, blended_floor, window)
            self.level = np.where(np.isfinite(history).sum(axis=1) >= min_history, _nan_median(history), np.nan)
            self.blended_noise = _row_noise(history / self.level[:, None])
            if self.names:
                self.shares = self._fit_all_shares(curve.version_starts(), window)
                per_source = np.stack([_windows(self.matrix[:, s], segment, window) for s in range(len(self.names))], axis=2)
                present = np.isfinite(per_source)
                self.known = present.sum(axis=1) >= min_history
                self.medians = np.where(self.known, _nan_median(per_source, axis=1), np.nan)
                # The history's own ratios (shares of the anchor), for the noise of the mixture view.
                mask = present & self.known[:, None, :]
                weights = self.shares[:, None, :]
                num = np.where(mask, per_source, 0.0) * weights
                den = np.where(mask, np.nan_to_num(self.medians)[:, None, :], 0.0) * weights
                totals = den.sum(axis=2)
                past = np.where(totals > 0, num.sum(axis=2) / np.where(totals > 0, totals, 1.0), np.nan)
                self.mixture_noise = _row_noise(past)

    def _fit_all_shares(self, version_start: np.ndarray, window: int) -> np.ndarray:
        """Per step: the shares of its mixture version, fitted on that version's steps up to it."""
        shares = np.empty((len(self.curve), len(self.names)))
        prior = np.full(len(self.names), 1.0 / len(self.names))
        for start in np.unique(version_start):
            stop = start + int(np.sum(version_start == start))
            shares[start:stop] = fit_shares(self.matrix[start:stop], self.curve.loss[start:stop], prior, window)
            prior = shares[stop - 1]  # a new mixture version starts from where the last one ended
        return shares

    def _mixture_ratio(self, i: np.ndarray, anchor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ratio, expected loss) of steps ``i`` against anchors ``anchor`` in the per-source view (NaN: no view)."""
        shares, known = self.shares[i], self.known[anchor]
        present = known & np.isfinite(self.matrix[i])
        w = np.where(present, shares, 0.0)
        expected = (w * np.nan_to_num(self.medians[anchor])).sum(axis=1)
        # The sources with a baseline must explain most of the loss, or the blended view is the better one.
        usable = ((shares * known).sum(axis=1) >= 0.5) & (w.sum(axis=1) > 0) & (expected > 0)
        safe = np.where(usable, expected, 1.0)
        ratio = np.where(usable, (w * np.nan_to_num(self.matrix[i])).sum(axis=1) / safe, np.nan)
        return ratio, np.where(usable, safe / np.where(usable, w.sum(axis=1), 1.0), np.nan)

    def judge(self, i: np.ndarray, anchor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(ratio, expected loss, noise, per-source view?) of steps ``i`` judged against the history before
        ``anchor`` (arrays); ratio NaN where there is too little history."""
        blended = self.curve.loss[i] / self.level[anchor]
        if not self.names:
            return blended, self.level[anchor], self.blended_noise[anchor], np.zeros(len(i), dtype=bool)
        mixed, expected = self._mixture_ratio(i, anchor)
        use = np.isfinite(mixed)
        return (
            np.where(use, mixed, blended),
            np.where(use, expected, self.level[anchor]),
            np.where(use, self.mixture_noise[anchor], self.blended_noise[anchor]),
            use,
        )

    def at(self, i: int, anchor: int) -> Expectation | None:
        """Step ``i`` judged against the history before ``anchor``; None when there is too little history."""
        ratio, expected, noise, mixed = (float(v[0]) for v in self.judge(np.array([i]), np.array([anchor])))
        if not np.isfinite(ratio):
            return None
        shares = {n: round(float(v), 4) for n, v in zip(self.names, self.shares[i])} if mixed else None
        return Expectation(ratio=ratio, expected=expected, noise=noise, mode="mixture" if mixed else "blended", shares=shares)
