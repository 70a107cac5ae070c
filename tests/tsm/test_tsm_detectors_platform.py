"""Changes the platform makes on purpose are no reason to roll back, on the real TSM (PostgreSQL): a
mixture change, an LR restart, a rescale, eval steps, a resume after a rollback; and a rollback does not
repeat itself, telling a spike whose data is at fault from a transient one."""

from __future__ import annotations

import math

import numpy as np

from tests.tsm.testlib import send

rng = np.random.default_rng(7)
T0, T1 = 1_700_000_000.0, 1_700_100_000.0  # trainer clocks of the first run and of a resumed one
EASY, HARD = 1.5, 4.0


def source_loss(s: int, level: float) -> float:
    return level * (1 + 1.5 * math.exp(-s / 150))


def points(
    steps,
    *,
    t0=T0,
    weights=lambda s: (0.8, 0.2),
    version=lambda s: 1,
    spike=lambda s: 1.0,
    lr=lambda s: 3e-4,
    ranks=lambda s: 1,
    noise=0.02,
    sources=True,
):
    """Rank 0 reports the blended loss (token-weighted per-source losses) and per-source losses, as the trainer does."""
    out = []
    for s in steps:
        w_easy, w_hard = weights(s)
        easy = source_loss(s, EASY) * spike(s) * (1 + rng.normal(0, noise))
        hard = source_loss(s, HARD) * spike(s) * (1 + rng.normal(0, noise))
        for r in range(ranks(s)):
            p = {
                "step": s,
                "rank": r,
                "time": t0 + s,
                "tokens_seen": 1000 * s,
                "mixture_version": version(s),
                "scalars": {"step_time_seconds": 1.0},
            }
            if r == 0:
                p["scalars"].update(loss=w_easy * easy + w_hard * hard, grad_norm=1.0 * spike(s), lr=lr(s))
                if sources:
                    p["source_losses"] = {"easy": easy, "hard": hard}
            out.append(p)
    return out


def feed(client, job, pts, evals=None):
    for i in range(0, len(pts), 2000):
        response = send(client, job, pts[i : i + 2000], evals=evals if i == 0 else None)
        assert response.status_code == 200, response.text


def evaluate(client, job):
    response = client.post(f"/v1/jobs/{job}/evaluate")
    assert response.status_code == 200, response.text
    return response.json()


def kinds(events):
    return sorted({e["kind"] for e in events})


def rollbacks(client, job):
    return client.get(f"/v1/jobs/{job}/rollbacks").json()


def test_a_mixture_change_is_no_spike_and_a_spike_under_the_new_mixture_is_found(pg_tsm):
    """More weight on the harder source at step 300 lifts the blended loss x1.7, per-source losses unchanged."""

    def weights(s):
        return (0.8, 0.2) if s < 300 else (0.2, 0.8)

    def version(s):
        return 1 if s < 300 else 2

    feed(pg_tsm, "mix", points(range(0, 380), weights=weights, version=version))
    events = evaluate(pg_tsm, "mix")
    assert "loss_spike" not in kinds(events) and rollbacks(pg_tsm, "mix") == []
    # A real spike 20 steps into the new mixture: judged against what that mixture predicts.
    feed(pg_tsm, "mix", points(range(380, 420), weights=weights, version=version, spike=lambda s: 2.5 if 400 <= s < 405 else 1.0))
    [spike] = [e for e in evaluate(pg_tsm, "mix") if e["kind"] == "loss_spike"]
    assert (spike["step"], spike["evidence"]["last_step"], spike["evidence"]["mode"]) == (400, 404, "mixture")
    assert spike["evidence"]["shares"]["hard"] > 0.7  # the shares of the mixture in force, fitted from the losses
    assert len(rollbacks(pg_tsm, "mix")) == 1

    # Without per-source losses the blended loss re-bases at the version change instead of firing.
    feed(pg_tsm, "blind", points(range(0, 420), weights=weights, version=version, sources=False))
    assert "loss_spike" not in kinds(evaluate(pg_tsm, "blind")) and rollbacks(pg_tsm, "blind") == []
    # The same jump with no version change is a spike: the version is what tells them apart.
    feed(pg_tsm, "unannounced", points(range(0, 420), weights=weights, sources=False))
    assert "loss_spike" in kinds(evaluate(pg_tsm, "unannounced"))


def test_lr_restart_rescale_and_eval_steps_make_no_rollback(pg_tsm):
    def lr(s):  # a schedule restart at 250: straight back to the peak, then a re-warmup from 0 at 400
        return 3e-4 * (0.3 if 150 <= s < 250 else 1.0) if s < 400 else 3e-4 * min(1.0, (s - 399) / 50)

    def bump(s):  # the loss rises after each LR restart
        if s >= 400:
            return 1 + 0.3 * (1 - math.exp(-(s - 400) / 8)) * math.exp(-(s - 400) / 80)
        return 1 + 0.35 * (1 - math.exp(-(s - 250) / 5)) * math.exp(-(s - 250) / 60) if s >= 250 else 1.0

    def ranks(s):  # rescale from 4 ranks to 2 at step 320: half the batch, more noise
        return 4 if s < 320 else 2

    pts = points(range(0, 550), lr=lr, spike=bump, ranks=ranks)
    for p in pts:
        if p["rank"] == 0 and p["step"] >= 320:
            p["scalars"]["loss"] *= 1 + rng.normal(0, 0.04)
            p["scalars"]["grad_norm"] *= 1.4
        if p["step"] % 50 == 0:
            p["scalars"]["step_time_seconds"] = 3.0  # eval steps take longer on every rank
    evals = [
        {"step": s, "kind": "val_loss", "name": n, "value": 1.6 * source_loss(s, lvl), "time": T0 + s}
        for s in range(50, 550, 50)
        for n, lvl in (("easy", EASY), ("hard", HARD))
    ]
    feed(pg_tsm, "restarts", pts, evals=evals)
    events = evaluate(pg_tsm, "restarts")
    assert not {"loss_spike", "divergence"} & set(kinds(events)), [e["message"] for e in events]
    assert rollbacks(pg_tsm, "restarts") == []


def _spike_and_rollback(client, job, *, spike_steps=range(300, 306)):
    feed(client, job, points(range(0, 420), spike=lambda s: 3.0 if s in spike_steps else 1.0))
    evaluate(client, job)
    [rollback] = rollbacks(client, job)
    assert client.patch(f"/v1/jobs/{job}/rollbacks/{rollback['id']}", json={"status": "acknowledged"}).status_code == 200
    return rollback


def test_a_resume_after_a_rollback_is_one_timeline_and_no_second_recommendation(pg_tsm):
    # The spike lasted until the run was stopped: the abandoned steps 300..419 are all high.
    rollback = _spike_and_rollback(pg_tsm, "resumed", spike_steps=range(300, 420))
    assert (rollback["resume_before_step"], rollback["skip_from_step"], rollback["skip_to_step"]) == (200, 200, 419)
    # The trainer resumes from the checkpoint of step 200 and replays (skipping the flagged data) up to 260:
    # left in place, the old steps 261..419 would meet the replay in a jump.
    feed(pg_tsm, "resumed", points(range(201, 261), t0=T1))
    events = evaluate(pg_tsm, "resumed")
    [resumed] = pg_tsm.get("/v1/jobs/resumed/events", params={"kind": "resumed"}).json()  # said by the ingest
    assert resumed["evidence"] == {
        "first_replayed_step": 201,
        "abandoned_to_step": 419,
        "rollback_id": rollback["id"],
        "skip_steps": [200, 419],
    }
    assert "loss_spike" not in kinds(events) and len(rollbacks(pg_tsm, "resumed")) == 1
    job = pg_tsm.get("/v1/jobs/resumed").json()
    assert (job["last_step"], job["evaluated_step"]) == (260, 260)
    curve = pg_tsm.get("/v1/jobs/resumed/curves/scalar/loss").json()
    assert (
        max(p["step"] for p in curve["points"]) == 260 and max(p["value"] for p in curve["points"] if p["step"] > 200) < 3
    )  # one timeline
    # The replay runs on past the old spike's steps: no recurrence, and the TSM says what it can tell.
    feed(pg_tsm, "resumed", points(range(261, 440), t0=T1))
    events = evaluate(pg_tsm, "resumed")
    [outcome] = [e for e in events if e["kind"] == "rollback_outcome"]
    assert outcome["evidence"]["verdict"] == "skipped" and outcome["subject"] == f"rollback/{rollback['id']}"
    assert len(rollbacks(pg_tsm, "resumed")) == 1
    assert evaluate(pg_tsm, "resumed") == []


def test_rerun_tells_data_at_fault_from_a_transient_spike(pg_tsm):
    for job in ("at-fault", "transient"):
        assert pg_tsm.patch(f"/v1/jobs/{job}/config", json={"detectors": {"spike": {"first_rollback": "rerun"}}}).status_code == 200
        rollback = _spike_and_rollback(pg_tsm, job)
        # Rerun first: back to before the spike, skipping nothing (an empty range).
        assert (rollback["resume_before_step"], rollback["skip_from_step"], rollback["skip_to_step"]) == (200, 200, 199)
    # The same data replayed: the spike comes back at the same steps -> the data is at fault.
    feed(pg_tsm, "at-fault", points(range(201, 420), t0=T1, spike=lambda s: 3.0 if 300 <= s < 306 else 1.0))
    events = evaluate(pg_tsm, "at-fault")
    [outcome] = [e for e in events if e["kind"] == "rollback_outcome"]
    assert outcome["evidence"]["verdict"] == "data" and "data is at fault" in outcome["message"]
    [recurrence] = [e for e in events if e["kind"] == "loss_spike"]
    assert recurrence["step"] == 300 and recurrence["subject"].startswith("loss/recurrence")
    first, second = rollbacks(pg_tsm, "at-fault")
    assert (second["resume_before_step"], second["skip_from_step"], second["skip_to_step"]) == (200, 200, 305)
    assert second["status"] == "open" and "data at fault" in second["reason"]
    # Replayed cleanly: transient, and nothing more to do.
    feed(pg_tsm, "transient", points(range(201, 420), t0=T1))
    events = evaluate(pg_tsm, "transient")
    assert [e["evidence"]["verdict"] for e in events if e["kind"] == "rollback_outcome"] == ["transient"]
    assert len(rollbacks(pg_tsm, "transient")) == 1


def test_a_spike_back_at_the_same_steps_after_its_data_was_skipped_is_said_not_rolled_back_again(pg_tsm):
    rollback = _spike_and_rollback(pg_tsm, "stubborn")
    # Its data was skipped, yet the loss spikes at the same steps: the model state, not the data.
    feed(pg_tsm, "stubborn", points(range(201, 420), t0=T1, spike=lambda s: 3.0 if 300 <= s < 306 else 1.0))
    events = evaluate(pg_tsm, "stubborn")
    [outcome] = [e for e in events if e["kind"] == "rollback_outcome"]
    assert outcome["evidence"]["verdict"] == "not_data" and outcome["severity"] == "critical"
    assert "not rolled back again" in outcome["message"]
    assert [r["id"] for r in rollbacks(pg_tsm, "stubborn")] == [rollback["id"]]


def test_ranks_reporting_the_same_step_a_moment_apart_are_no_resume(pg_tsm):
    # Every rank sends its own batch per step; rank 1 finishes step N a few milliseconds after rank 0.
    for s in range(1, 21):
        for rank in (0, 1):
            response = send(
                pg_tsm,
                "two-ranks",
                [{"step": s, "rank": rank, "time": T0 + s + 0.003 * rank, "tokens_seen": 1000 * s, "scalars": {"loss": 2.0}}],
            )
            assert response.status_code == 200, response.text
    assert pg_tsm.get("/v1/jobs/two-ranks/events", params={"kind": "resumed"}).json() == []
    curve = pg_tsm.get("/v1/jobs/two-ranks/curves/scalar/loss").json()
    assert sorted({p["step"] for p in curve["points"]}) == list(range(1, 21))
    # A real resume on rank 1 alone (a later clock, an earlier step) is still one.
    assert (
        send(pg_tsm, "two-ranks", [{"step": 15, "rank": 1, "time": T1, "tokens_seen": 15_000, "scalars": {"loss": 2.0}}]).status_code == 200
    )
    [resumed] = pg_tsm.get("/v1/jobs/two-ranks/events", params={"kind": "resumed"}).json()
    assert resumed["evidence"]["first_replayed_step"] == 15
