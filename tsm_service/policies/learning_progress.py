"""Learning progress (ADO-like: Jiang et al., 2024, "Adaptive Data Optimization"): give data to the
sources whose loss is still falling fastest per unit of sampling weight.

Each source's training loss is smoothed (EMA, ``loss_alpha``); its progress is the smoothed drop of
that loss per observation (EMA of the decrements, ``rate_alpha``), clipped at 0. Divided by the
source's current weight it estimates the drop bought per unit of data; times the source's share in
the target mixture it is the gain on the objective. A source that was learned (its loss fell by more
than ``min_learned`` of its first value) and is now being forgotten (its loss rose above its best)
counts the regression as progress to win back over ``recovery_observations``: starving a learned
source must not undo it. Weights are proportional to the gain, blended with the target
(``prior_mix``) so a noisy estimate starves nothing. A source that cannot be learned (random
tokens) or is already learned and kept (converged) shows no progress and falls to the weight floor;
when nothing progresses the target mixture returns.
"""

from __future__ import annotations

from typing import Any

from tsm_service.policies.base import MixturePolicy, normalise


class LearningProgressPolicy(MixturePolicy):
    name = "learning_progress"

    def __init__(self, sources: list[str], *, params: dict[str, float] | None = None, target: dict[str, float] | None = None):
        super().__init__(sources, params=params)
        self.loss_alpha = float(self.params.get("loss_alpha", 0.5))
        self.rate_alpha = float(self.params.get("rate_alpha", 0.3))
        self.prior_mix = float(self.params.get("prior_mix", 0.2))
        self.min_learned = float(self.params.get("min_learned", 0.05))
        self.recovery_observations = float(self.params.get("recovery_observations", 5.0))
        self.target = normalise(target) if target else {s: 1.0 / len(self.sources) for s in self.sources}
        self.smoothed: dict[str, float] = {}
        self.rate: dict[str, float] = {}
        self.first: dict[str, float] = {}
        self.best: dict[str, float] = {}
        self.rounds = 0

    def observe(self, losses: dict[str, float], *, step: int) -> None:
        self.rounds += 1
        for s in self.sources:
            if s not in losses:
                continue
            if s not in self.smoothed:
                self.smoothed[s] = self.first[s] = self.best[s] = losses[s]
                continue
            previous = self.smoothed[s]
            self.smoothed[s] = self.loss_alpha * losses[s] + (1 - self.loss_alpha) * previous
            drop = previous - self.smoothed[s]
            self.rate[s] = drop if s not in self.rate else self.rate_alpha * drop + (1 - self.rate_alpha) * self.rate[s]
            self.best[s] = min(self.best[s], self.smoothed[s])

    def forgetting(self) -> dict[str, float]:
        """Loss a learned source has lost since its best, per observation of the recovery horizon."""
        out = {}
        for s in self.sources:
            learned = s in self.first and self.first[s] - self.best[s] > self.min_learned * abs(self.first[s])
            out[s] = max(0.0, self.smoothed[s] - self.best[s]) / self.recovery_observations if learned else 0.0
        return out

    def progress(self) -> dict[str, float]:
        """Recent loss decrease per observation (nats), 0 for sources not falling."""
        return {s: max(0.0, self.rate.get(s, 0.0)) for s in self.sources}

    def propose(self, current: dict[str, float]) -> tuple[dict[str, float], str]:
        progress, forgetting = self.progress(), self.forgetting()
        gain = {s: self.target.get(s, 0.0) * (progress[s] + forgetting[s]) / max(current.get(s, 0.0), 1e-3) for s in self.sources}
        total = sum(gain.values())
        if total <= 0:
            return dict(self.target), "no source is making progress; back to the target mixture"
        weights = {s: (1 - self.prior_mix) * gain[s] / total + self.prior_mix * self.target.get(s, 0.0) for s in self.sources}
        best = max(progress, key=progress.get)
        stalled = [s for s in self.sources if progress[s] <= 0]
        why = f"learning progress (fastest: {best} -{progress[best]:.4f} nats per observation)"
        if stalled:
            why += f"; no progress on {', '.join(stalled)}"
        forgotten = [s for s in self.sources if forgetting[s] > 0]
        if forgotten:
            why += f"; winning back {', '.join(forgotten)}"
        return weights, why

    def state_dict(self) -> dict[str, Any]:
        return {
            "smoothed": self.smoothed,
            "rate": self.rate,
            "first": self.first,
            "best": self.best,
            "rounds": self.rounds,
            "target": self.target,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.smoothed = {s: float(v) for s, v in state.get("smoothed", {}).items()}
        self.rate = {s: float(v) for s, v in state.get("rate", {}).items()}
        self.first = {s: float(v) for s, v in state.get("first", {}).items()}
        self.best = {s: float(v) for s, v in state.get("best", {}).items()}
        self.rounds = int(state.get("rounds", 0))
        if state.get("target"):
            self.target = normalise(state["target"])
