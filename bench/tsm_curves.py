"""The labelled curve set of ``bench/tsm_detection.py``: synthetic curves from realistic shapes and noise
models, regenerated from a seed (so the set is code, not megabytes), plus real curves recorded from this
project's trainer on real text (``bench/tsm_curves/*.json``, see ``record_real_curve``).

Synthetic curve: ``steps`` optimizer steps of a run with 2-4 data sources. Each source's loss follows
a decaying shape (exponential ``L + A exp(-t/tau)`` or power law ``L + A (1 + t/t0)^-alpha``); a step's
per-source loss is the mean over the rows of that source in the batch, so its noise falls with the
source's share (``row_noise / sqrt(rows)``), times a common AR(1) factor (the step's data order and
optimizer noise), with heavy-tailed (Student-t) outliers on a few steps. The blended loss is the
token-weighted mean of the per-source losses, with the rows per source drawn each step from the
mixture in force. Grad norm decays with the loss and has log-normal noise.

Labelled events (``Event``): trouble that calls for a rollback (``spike`` of several heights and
lengths, on every source or on one; ``nan``; ``grad_runaway``), trouble that does not (``plateau``,
``straggler``), and the changes the platform makes on purpose (``mixture_change`` that moves the
blended loss up to x1.7 with per-source losses unchanged, ``rescale`` that changes world size and
batch so noise and grad norm level change, ``lr_restart`` warmup or schedule restarts that bump the
loss, ``resume`` after a rollback with replayed steps, ``eval`` steps).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REAL_CURVES = Path(__file__).resolve().parent / "tsm_curves"
ROLLBACK_KINDS = ("spike", "nan", "grad_runaway")
BENIGN_KINDS = ("mixture_change", "rescale", "lr_restart", "resume", "eval")


@dataclass
class Event:
    kind: str
    onset: int  # step index
    end: int
    height: float = 1.0  # spikes: loss multiplier
    detail: str = ""

    @property
    def wants_rollback(self) -> bool:
        return self.kind in ROLLBACK_KINDS


@dataclass
class Curve:
    name: str
    noise: float  # relative step noise of the blended loss (median over the run)
    steps: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray
    lr: np.ndarray
    source_losses: dict[str, np.ndarray]
    mixture_version: np.ndarray
    world_size: np.ndarray
    step_times: dict[int, np.ndarray]  # rank -> seconds per step (ranks of the last world size)
    events: list[Event] = field(default_factory=list)
    real: bool = False


def _shape(rng: np.random.Generator, n: int, level: float) -> np.ndarray:
    t = np.arange(n, dtype=float)
    if rng.random() < 0.5:
        return level + rng.uniform(4, 8) * np.exp(-t / rng.uniform(250, 600))
    return level + rng.uniform(5, 9) * (1 + t / rng.uniform(20, 60)) ** -rng.uniform(0.5, 0.9)


def _ar1(rng: np.random.Generator, n: int, sigma: float, phi: float = 0.6) -> np.ndarray:
    noise = np.empty(n)
    acc = 0.0
    for i, z in enumerate(rng.normal(0, sigma * np.sqrt(1 - phi * phi), n)):
        acc = phi * acc + z
        noise[i] = acc
    return noise


def synthetic_curve(seed: int, *, rows: int, scenario: str, steps: int = 3000) -> Curve:
    """One labelled curve. ``rows`` is the global batch (sequences per step): the noise level.
    ``scenario`` picks the events: see ``SCENARIOS``."""
    rng = np.random.default_rng(seed)
    n = steps
    k = int(rng.integers(2, 5))
    names = [f"source{i}" for i in range(k)]
    levels = rng.uniform(1.2, 4.5, k)
    clean = {name: _shape(rng, n, level) for name, level in zip(names, levels)}
    weights = rng.dirichlet(np.full(k, 3.0))
    version = np.ones(n, dtype=int)
    world = np.full(n, 8)
    lr = _lr_schedule(n, warmup=100, peak=3e-4)
    row_noise = 0.5
    common = 1 + _ar1(rng, n, 0.01)
    events: list[Event] = []
    batch = np.full(n, rows)
    mult = {name: np.ones(n) for name in names}  # per-source multipliers: spikes, lr bumps
    grad_mult = np.ones(n)
    nan_from = None

    def at(lo: float, hi: float) -> int:
        return int(rng.integers(int(lo * n), int(hi * n)))

    plan = SCENARIOS[scenario]
    weight_of = np.tile(weights, (n, 1))
    for kind in plan:
        if kind == "mixture_change":
            onset = at(0.35, 0.65)
            harder = int(np.argmax(levels))
            new = np.full(k, 0.2 / max(k - 1, 1))
            new[harder] = 0.8  # more weight on the hardest source: blended loss up, per-source unchanged
            if rng.random() < 0.3:
                new = rng.dirichlet(np.full(k, 3.0))
            weight_of[onset:] = new
            version[onset:] = version[onset - 1] + 1
            before = float(weights @ np.array([clean[s][onset] for s in names]))
            after = float(new @ np.array([clean[s][onset] for s in names]))
            events.append(Event("mixture_change", onset, onset + 100, height=after / before, detail=f"blended x{after / before:.2f}"))
        elif kind == "rescale":
            onset = at(0.3, 0.7)
            factor = rng.choice([0.25, 0.5, 2.0])
            world[onset:] = max(1, int(world[onset - 1] * factor))
            batch[onset:] = max(4, int(rows * factor))  # the per-rank batch is kept: the global batch follows
            grad_mult[onset:] *= np.sqrt(1 / factor)
            events.append(Event("rescale", onset, onset + 100, detail=f"world x{factor}"))
        elif kind == "lr_restart":
            onset = at(0.3, 0.7)
            warm = int(rng.choice([0, 50, 200]))  # 0: schedule restart straight to peak
            lr[onset:] = _lr_schedule(n - onset, warmup=warm, peak=3e-4)
            bump = rng.uniform(1.05, 1.35)
            tau = rng.uniform(10, 60)
            t = np.arange(n - onset, dtype=float)
            rise = 1 + (bump - 1) * (1 - np.exp(-t / max(warm / 3, tau / 4))) * np.exp(-t / (tau + warm))
            for name in names:
                mult[name][onset:] *= rise
            grad_mult[onset:] *= 1 + (rise - 1) * 3
            events.append(Event("lr_restart", onset, onset + 150, height=bump, detail=f"warmup {warm}"))
        elif kind == "resume":
            onset = at(0.3, 0.7)
            # The replay from the checkpoint: what the TSM sees is one timeline (crud/timeline.py) whose
            # first steps after the resume come from a freshly restored data loader and optimizer.
            mult_blip = rng.uniform(1.02, 1.12)
            for name in names:
                mult[name][onset : onset + 2] *= mult_blip
            events.append(Event("resume", onset, onset + 50, detail="replayed steps"))
        elif kind == "eval":
            events.append(Event("eval", 100, n - 1, detail="eval every 100 steps (val_loss is its own series)"))
        elif kind.startswith("spike"):
            onset = at(0.15, 0.9)
            height = float(rng.choice([1.3, 1.5, 2.0, 3.0, 5.0]))
            length = int(rng.choice([3, 4, 8, 30]))
            only_one = kind == "spike_one"
            hit = [names[int(np.argmax(weight_of[onset]))]] if only_one else names
            share = sum(float(weight_of[onset][names.index(s)]) for s in hit)
            # Height of the blended loss: one source carries it alone when the spike is its data's.
            source_height = 1 + (height - 1) / share if only_one else height
            for name in hit:
                mult[name][onset : onset + length] *= source_height
            grad_mult[onset : onset + length] *= rng.uniform(2, 8)
            events.append(
                Event(
                    "spike",
                    onset,
                    onset + length - 1,
                    height=height,
                    detail=f"x{height} for {length} steps{' on one source' if only_one else ''}",
                )
            )
        elif kind == "nan":
            nan_from = at(0.5, 0.95)
            events.append(Event("nan", nan_from, nan_from))
        elif kind == "grad_runaway":
            onset = at(0.4, 0.9)
            growth = np.geomspace(1, 1e4, 40)
            grad_mult[onset : onset + 40] *= growth
            grad_mult[onset + 40 :] *= 1e4
            t = np.arange(n - onset, dtype=float)
            for name in names:
                mult[name][onset:] *= 1 + np.minimum(t / 40, 1) * 2
            events.append(Event("grad_runaway", onset, n - 1))
        elif kind == "plateau":
            onset = at(0.4, 0.6)
            for name in names:
                clean[name][onset:] = clean[name][onset]
            events.append(Event("plateau", onset + 200, n - 1))
        elif kind == "straggler":
            onset = at(0.3, 0.8)
            events.append(Event("straggler", onset, n - 1, detail="rank 3 x1.8"))

    source_losses = {}
    counts = np.array([rng.multinomial(int(batch[i]), weight_of[i] / weight_of[i].sum()) for i in range(n)])
    for j, name in enumerate(names):
        rows_j = counts[:, j]
        noise = rng.standard_t(4, n) / np.sqrt(2) * row_noise / np.sqrt(np.maximum(rows_j, 1))
        value = clean[name] * mult[name] * common * (1 + noise)
        source_losses[name] = np.where(rows_j > 0, np.maximum(value, 0.05), np.nan)
    share = counts / counts.sum(axis=1, keepdims=True)
    loss = np.nansum(np.nan_to_num(np.column_stack([source_losses[s] for s in names])) * share, axis=1)
    grad = (0.3 + 0.2 * loss) * grad_mult * np.exp(rng.normal(0, 0.1, n))
    if nan_from is not None:
        loss[nan_from:] = np.nan
        grad[nan_from:] = np.nan
    step_times = {r: 1.0 + rng.normal(0, 0.03, n) for r in range(int(world[-1]))}
    for ev in events:
        if ev.kind == "straggler" and 3 in step_times:
            step_times[3][ev.onset :] *= 1.8
        if ev.kind == "eval":
            for r in step_times:
                step_times[r][100::100] *= 3
    relative = np.abs(np.diff(np.log(loss[np.isfinite(loss)]))) / np.sqrt(2) * 1.4826
    return Curve(
        name=f"{scenario}/rows{rows}/seed{seed}",
        noise=float(np.median(relative)),
        steps=np.arange(n),
        loss=loss,
        grad_norm=grad,
        lr=lr,
        source_losses=source_losses,
        mixture_version=version,
        world_size=world,
        step_times=step_times,
        events=events,
    )


def _lr_schedule(n: int, *, warmup: int, peak: float) -> np.ndarray:
    t = np.arange(n, dtype=float)
    ramp = np.minimum(1.0, (t + 1) / warmup) if warmup else np.ones(n)
    return peak * ramp * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * np.minimum(t / max(n, 1), 1))))


SCENARIOS = {
    "clean": ["eval"],
    "spikes": ["spike", "spike", "spike"],
    "spike_one_source": ["spike_one", "spike"],
    "mixture_change": ["mixture_change"],
    "mixture_then_spike": ["mixture_change", "spike"],
    "rescale": ["rescale", "spike"],
    "lr_restart": ["lr_restart"],
    "resume": ["resume", "spike"],
    "nan": ["spike", "nan"],
    "grad_runaway": ["grad_runaway"],
    "plateau": ["plateau"],
    "straggler": ["straggler", "eval"],
    "everything_benign": ["mixture_change", "rescale", "lr_restart", "resume", "eval"],
}
BATCH_ROWS = {"2%": 512, "4%": 128, "9%": 32, "14%": 12}


def synthetic_set(seeds_per_cell: int = 2) -> list[Curve]:
    curves = []
    for s, scenario in enumerate(SCENARIOS):
        for r, rows in enumerate(BATCH_ROWS.values()):
            for seed in range(seeds_per_cell):
                curves.append(synthetic_curve(1000 * s + 100 * r + seed, rows=rows, scenario=scenario))
    return curves


def real_curves() -> list[Curve]:
    """Curves recorded from the trainer (``record_real_curve``), with labels written next to them."""
    curves = []
    for path in sorted(REAL_CURVES.glob("*.json")):
        data = json.loads(path.read_text())
        steps = np.array(data["steps"])
        sources = {k: np.array(v, dtype=float) for k, v in data["source_losses"].items()}
        curves.append(
            Curve(
                name=f"real/{path.stem}",
                noise=float(data.get("noise", 0)),
                steps=steps,
                loss=np.array(data["loss"], dtype=float),
                grad_norm=np.array(data["grad_norm"], dtype=float),
                lr=np.array(data["lr"], dtype=float),
                source_losses=sources,
                mixture_version=np.array(data["mixture_version"], dtype=int),
                world_size=np.array(data.get("world_size", [1] * len(steps)), dtype=int),
                step_times={0: np.array(data["step_time"], dtype=float)},
                events=[Event(**e) for e in data.get("events", [])],
                real=True,
            )
        )
    return curves
