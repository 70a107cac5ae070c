"""Adaptive mixture policies: pure objects from per-source losses to new mixture weights.

A policy observes per-source training losses and proposes weights; ``MixtureController`` adds the
guardrails (weight floor, maximum change per update, cool-down) and decides when to update. Both run
in-process (the benchmark drives them directly); the service feeds them from its database and writes
their decisions to the DMU.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tsm_service.config import GuardrailConfig


def normalise(weights: dict[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    if total <= 0 or not math.isfinite(total):
        raise ValueError(f"weights {weights} cannot be normalised (sum {total})")
    return {source: value / total for source, value in weights.items()}


class MixturePolicy(ABC):
    name: ClassVar[str]

    def __init__(self, sources: list[str], *, params: dict[str, float] | None = None):
        if not sources:
            raise ValueError(f"policy {self.name}: needs at least one source")
        self.sources = sorted(sources)
        self.params = dict(params or {})

    @abstractmethod
    def observe(self, losses: dict[str, float], *, step: int) -> None:
        """Take in the recent mean training loss of each source (sources missing from ``losses`` were not seen)."""

    @abstractmethod
    def propose(self, current: dict[str, float]) -> tuple[dict[str, float], str]:
        """Weights the policy wants (normalised) given the ``current`` ones, and why in one line."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - stateless policies keep nothing
        pass


def apply_guardrails(current: dict[str, float], proposed: dict[str, float], *, weight_floor: float, max_change: float) -> dict[str, float]:
    """Move from ``current`` towards ``proposed`` keeping every weight >= ``weight_floor`` and no weight
    changing by more than ``max_change``.

    The floor is applied by mixing the proposal with the uniform mixture; the step is a convex
    combination of current and target, so the sum stays 1 and a floor the current weights already
    satisfy still holds.
    """
    sources = sorted(set(current) | set(proposed))
    k = len(sources)
    floor = min(weight_floor, 1.0 / k)
    current = normalise({s: current.get(s, 0.0) for s in sources})
    target = normalise({s: max(proposed.get(s, 0.0), 0.0) for s in sources})
    target = {s: floor + (1 - k * floor) * w for s, w in target.items()}
    largest = max(abs(target[s] - current[s]) for s in sources)
    fraction = 1.0 if largest <= max_change else max_change / largest
    return {s: current[s] + fraction * (target[s] - current[s]) for s in sources}


@dataclass
class MixtureDecision:
    step: int
    previous: dict[str, float]
    weights: dict[str, float]
    reason: str
    losses: dict[str, float] = field(default_factory=dict)


class MixtureController:
    """Observe every new step's losses; update at most once per cool-down, within the guardrails."""

    def __init__(self, policy: MixturePolicy, guardrails: GuardrailConfig, *, min_change: float = 1e-3):
        self.policy = policy
        self.guardrails = guardrails
        self.min_change = min_change
        self.last_observed_step: int | None = None
        self.last_update_step: int | None = None

    def step(
        self, *, current: dict[str, float], losses: dict[str, float], step: int, update_allowed: bool = True
    ) -> MixtureDecision | None:
        """Observe ``losses`` (once per step) and return an update when one is due and allowed."""
        finite = {s: v for s, v in losses.items() if math.isfinite(v)}
        if self.last_observed_step is None or step > self.last_observed_step:
            self.policy.observe(finite, step=step)
            self.last_observed_step = step
        if not update_allowed:
            return None
        if self.last_update_step is not None and step - self.last_update_step < self.guardrails.cooldown_steps:
            return None
        proposed, why = self.policy.propose(normalise(current))
        weights = apply_guardrails(current, proposed, weight_floor=self.guardrails.weight_floor, max_change=self.guardrails.max_change)
        previous = normalise(current)
        if max(abs(weights[s] - previous.get(s, 0.0)) for s in weights) < self.min_change:
            return None
        self.last_update_step = step
        return MixtureDecision(
            step=step, previous=previous, weights=weights, losses=finite, reason=f"{self.policy.name} at step {step}: {why}"
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy.state_dict(),
            "last_observed_step": self.last_observed_step,
            "last_update_step": self.last_update_step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state.get("policy", {}))
        self.last_observed_step = state.get("last_observed_step")
        self.last_update_step = state.get("last_update_step")
