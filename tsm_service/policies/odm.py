"""Online Data Mixing (Albalak et al., 2023): an EXP3 bandit whose arms are sources and whose reward is
the training loss of a source (high loss = much left to learn).

ODM samples one source per batch and importance-weights its loss by 1/pi. Here every batch mixes all
sources and each source's loss is observed every round, so the expected importance-weighted reward is
the loss itself (full information); the smoothed reward is R_i <- alpha R_i + (1 - alpha) L_i and the
weights are pi = (1 - K eps_t) softmax(eps_{t-1} R / temperature) + eps_t with
eps_t = min(1/K, sqrt(ln K / (K t))).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tsm_service.policies.base import MixturePolicy


class OdmPolicy(MixturePolicy):
    name = "odm"

    def __init__(self, sources: list[str], *, params: dict[str, float] | None = None):
        super().__init__(sources, params=params)
        self.alpha = float(self.params.get("alpha", 0.9))
        self.temperature = float(self.params.get("temperature", 1.0))
        self.rewards = {s: 0.0 for s in self.sources}
        self.rounds = 0

    def _epsilon(self, t: int) -> float:
        k = len(self.sources)
        return min(1.0 / k, math.sqrt(math.log(k) / (k * max(t, 1)))) if k > 1 else 0.0

    def observe(self, losses: dict[str, float], *, step: int) -> None:
        if not any(s in losses for s in self.sources):
            return
        self.rounds += 1
        for s in self.sources:
            if s in losses:
                # The first observation seeds the average instead of being shrunk towards 0.
                self.rewards[s] = losses[s] if self.rounds == 1 else self.alpha * self.rewards[s] + (1 - self.alpha) * losses[s]

    def propose(self, current: dict[str, float]) -> tuple[dict[str, float], str]:
        if self.rounds == 0:
            return dict(current), "no per-source loss observed yet"
        k = len(self.sources)
        eps_prev, eps = self._epsilon(self.rounds - 1), self._epsilon(self.rounds)
        scores = np.array([eps_prev * self.rewards[s] / self.temperature for s in self.sources])
        soft = np.exp(scores - scores.max())
        soft /= soft.sum()
        weights = {s: float((1 - k * eps) * p + eps) for s, p in zip(self.sources, soft)}
        top = max(self.rewards, key=self.rewards.get)
        return weights, f"EXP3 on smoothed per-source loss (highest: {top}={self.rewards[top]:.3f}, eps={eps:.3f})"

    def state_dict(self) -> dict[str, Any]:
        return {"rewards": self.rewards, "rounds": self.rounds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rewards.update({s: float(v) for s, v in state.get("rewards", {}).items() if s in self.rewards})
        self.rounds = int(state.get("rounds", 0))
