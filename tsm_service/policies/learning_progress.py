"""Learning progress (ADO-like: Jiang et al., 2024, "Adaptive Data Optimization"): give data to the
sources whose loss is still falling fastest per unit of sampling weight.

For each source a fast and a slow EMA of its training loss; progress_i = max(0, slow_i - fast_i) is
the recent drop in nats. Divided by the source's current weight it estimates the drop bought per unit
of data; times the source's share in the target (validation) mixture it is the gain on the objective.
Weights are proportional to that gain, blended with the prior (``prior_mix``) so no source is starved
by a noisy estimate. A source that cannot be learned (random tokens) or is already learned (easy,
converged) shows no progress and falls to the weight floor; when nothing progresses the prior returns.
"""

from __future__ import annotations

from typing import Any

from tsm_service.policies.base import MixturePolicy, normalise


class LearningProgressPolicy(MixturePolicy):
    name = "learning_progress"

    def __init__(self, sources: list[str], *, params: dict[str, float] | None = None,
                 target: dict[str, float] | None = None):
        super().__init__(sources, params=params)
        self.fast_alpha = float(self.params.get("fast_alpha", 0.5))
        self.slow_alpha = float(self.params.get("slow_alpha", 0.1))
        self.prior_mix = float(self.params.get("prior_mix", 0.2))
        self.power = float(self.params.get("power", 1.0))
        self.target = normalise(target) if target else {s: 1.0 / len(self.sources) for s in self.sources}
        self.fast: dict[str, float] = {}
        self.slow: dict[str, float] = {}
        self.rounds = 0

    def observe(self, losses: dict[str, float], *, step: int) -> None:
        self.rounds += 1
        for s in self.sources:
            if s not in losses:
                continue
            loss = losses[s]
            self.fast[s] = loss if s not in self.fast else self.fast_alpha * loss + (1 - self.fast_alpha) * self.fast[s]
            self.slow[s] = loss if s not in self.slow else self.slow_alpha * loss + (1 - self.slow_alpha) * self.slow[s]

    def progress(self) -> dict[str, float]:
        return {s: max(0.0, self.slow[s] - self.fast[s]) if s in self.fast else 0.0 for s in self.sources}

    def propose(self, current: dict[str, float]) -> tuple[dict[str, float], str]:
        progress = self.progress()
        gain = {s: self.target.get(s, 0.0) * progress[s] / max(current.get(s, 0.0), 1e-3) for s in self.sources}
        total = sum(gain.values())
        if total <= 0:
            return dict(self.target), "no source is making progress; back to the target mixture"
        learned = {s: (g / total) ** self.power for s, g in gain.items()}
        learned = normalise(learned)
        weights = {s: (1 - self.prior_mix) * learned[s] + self.prior_mix * self.target.get(s, 0.0) for s in self.sources}
        best = max(progress, key=progress.get)
        stalled = [s for s in self.sources if progress[s] <= 0]
        why = f"learning progress (fastest: {best} -{progress[best]:.4f} nats)"
        if stalled:
            why += f"; no progress on {', '.join(stalled)}"
        return weights, why

    def state_dict(self) -> dict[str, Any]:
        return {"fast": self.fast, "slow": self.slow, "rounds": self.rounds, "target": self.target}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.fast = {s: float(v) for s, v in state.get("fast", {}).items()}
        self.slow = {s: float(v) for s, v in state.get("slow", {}).items()}
        self.rounds = int(state.get("rounds", 0))
        if state.get("target"):
            self.target = normalise(state["target"])
