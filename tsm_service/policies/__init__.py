"""Pluggable adaptive mixture policies (static, odm, learning_progress) and their guardrails."""

from __future__ import annotations

from tsm_service.policies.base import MixtureController, MixtureDecision, MixturePolicy, apply_guardrails, normalise
from tsm_service.policies.learning_progress import LearningProgressPolicy
from tsm_service.policies.odm import OdmPolicy
from tsm_service.policies.static import StaticPolicy

POLICIES: dict[str, type[MixturePolicy]] = {p.name: p for p in (StaticPolicy, OdmPolicy, LearningProgressPolicy)}


def make_policy(name: str, sources: list[str], *, params: dict[str, float] | None = None) -> MixturePolicy:
    try:
        policy_class = POLICIES[name]
    except KeyError as e:
        raise ValueError(f"unknown mixture policy {name!r}; known: {', '.join(sorted(POLICIES))}") from e
    return policy_class(sources, params=params)


__all__ = [
    "POLICIES",
    "LearningProgressPolicy",
    "MixtureController",
    "MixtureDecision",
    "MixturePolicy",
    "OdmPolicy",
    "StaticPolicy",
    "apply_guardrails",
    "make_policy",
    "normalise",
]
