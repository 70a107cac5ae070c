"""Mixture policies in-process: guardrails hold, ODM chases loss, learning progress chases progress."""

from __future__ import annotations

import math

import pytest

from tsm_service.config import GuardrailConfig
from tsm_service.policies import MixtureController, apply_guardrails, make_policy

SOURCES = ["easy", "hard", "random"]
UNIFORM = {s: 1 / 3 for s in SOURCES}


def _losses(t: int) -> dict[str, float]:
    """easy converges fast, hard keeps improving, random tokens never do (ln 1000)."""
    return {"easy": 1.0 + 2.0 * 0.7**t, "hard": 3.0 + 3.0 * 0.98**t, "random": math.log(1000)}


@pytest.mark.parametrize("proposed", [{"easy": 1.0, "hard": 0.0, "random": 0.0}, {"easy": 0.0, "hard": 0.2, "random": 0.8}])
def test_guardrails_bound_every_update(proposed):
    weights = apply_guardrails(UNIFORM, proposed, weight_floor=0.05, max_change=0.1)
    assert math.isclose(sum(weights.values()), 1.0)
    assert max(abs(weights[s] - UNIFORM[s]) for s in SOURCES) <= 0.1 + 1e-12
    assert min(weights.values()) >= 0.05 - 1e-12
    # Repeated updates converge to the proposal mixed with the floor, never below it.
    for _ in range(50):
        weights = apply_guardrails(weights, proposed, weight_floor=0.05, max_change=0.1)
    assert min(weights.values()) == pytest.approx(0.05)


def test_guardrails_reject_impossible_weights():
    with pytest.raises(ValueError, match="cannot be normalised"):
        apply_guardrails(UNIFORM, {"easy": 0.0, "hard": 0.0, "random": 0.0}, weight_floor=0.0, max_change=1.0)


def test_controller_respects_cooldown_and_observes_each_step_once():
    controller = MixtureController(make_policy("odm", SOURCES), GuardrailConfig(cooldown_steps=100, max_change=0.1))
    weights, updates = dict(UNIFORM), []
    for step in range(0, 500, 10):
        decision = controller.step(current=weights, losses=_losses(step // 10), step=step)
        controller.step(current=weights, losses=_losses(step // 10), step=step)  # same step again: not re-observed
        if decision is not None:
            weights = decision.weights
            updates.append(step)
    # EXP3 explores uniformly while eps_t = 1/K (the first rounds), then updates once per cool-down.
    assert updates == [30, 130, 230, 330, 430]
    assert controller.policy.rounds == 50


def test_odm_upweights_the_highest_loss_source():
    controller = MixtureController(make_policy("odm", SOURCES), GuardrailConfig(cooldown_steps=0, max_change=0.2))
    weights = dict(UNIFORM)
    for t in range(30):
        decision = controller.step(current=weights, losses=_losses(t), step=t)
        weights = decision.weights if decision else weights
    # Loss as reward: ODM favours the random-token source (its known weakness on unlearnable data).
    assert max(weights, key=weights.get) == "random"
    assert "EXP3" in decision.reason if decision else True


def test_learning_progress_starves_unlearnable_and_converged_sources():
    policy = make_policy("learning_progress", SOURCES, params={"prior_mix": 0.1})
    controller = MixtureController(policy, GuardrailConfig(cooldown_steps=0, max_change=0.2, weight_floor=0.02))
    weights = dict(UNIFORM)
    reasons = []
    for t in range(60):
        decision = controller.step(current=weights, losses=_losses(t), step=t)
        if decision:
            weights = decision.weights
            reasons.append(decision.reason)
        if t == 8:
            assert max(weights, key=weights.get) == "easy"  # early on, easy falls fastest
    assert max(weights, key=weights.get) == "hard" and weights["hard"] > 0.6
    assert weights["random"] < 0.06 and weights["easy"] < 0.3
    assert "no progress on random" in reasons[-1]


def test_static_policy_never_updates_and_state_round_trips():
    static = MixtureController(make_policy("static", SOURCES), GuardrailConfig(cooldown_steps=0))
    assert all(static.step(current=UNIFORM, losses=_losses(t), step=t) is None for t in range(10))

    first = MixtureController(make_policy("learning_progress", SOURCES), GuardrailConfig(cooldown_steps=5))
    for t in range(12):
        first.step(current=UNIFORM, losses=_losses(t), step=t)
    second = MixtureController(make_policy("learning_progress", SOURCES), GuardrailConfig(cooldown_steps=5))
    second.load_state_dict(first.state_dict())
    assert second.policy.propose(UNIFORM) == first.policy.propose(UNIFORM)
    assert second.last_update_step == first.last_update_step


def test_unknown_policy_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown mixture policy 'doremi'; known: learning_progress, odm, static"):
        make_policy("doremi", SOURCES)


def test_learning_progress_wins_back_a_forgotten_source_but_not_noise():
    policy = make_policy("learning_progress", ["learned", "noise", "other"], params={"prior_mix": 0.0})
    for t in range(20):  # learned drops 6 -> 2 then stays; noise only drifts up; other is flat
        policy.observe({"learned": max(2.0, 6.0 - 0.5 * t), "noise": 6.2 + 0.01 * t, "other": 3.0}, step=t)
    assert policy.forgetting() == {"learned": 0.0, "noise": 0.0, "other": 0.0}
    for t in range(20, 26):  # starved, it is being forgotten
        policy.observe({"learned": 2.0 + 0.2 * (t - 19), "noise": 6.4 + 0.01 * t, "other": 3.0}, step=t)
    assert policy.forgetting()["learned"] > 0 and policy.forgetting()["noise"] == 0.0
    weights, why = policy.propose({"learned": 0.05, "noise": 0.05, "other": 0.9})
    assert max(weights, key=weights.get) == "learned" and "winning back learned" in why
