"""Rollback recommendations that do not repeat themselves, and what a replay after one tells.

A finding with bad steps (a loss spike, a runaway grad norm) gets a recommendation: resume from a
checkpoint ``rollback_margin_steps`` before it and, with ``first_rollback: skip`` (PaLM), skip the data
fed since; with ``first_rollback: rerun`` (Megatron's rerun logic) replay the same data first.

Once the operator applied one and the trainer resumed (a ``resumed`` event, ``crud/timeline.py``), the
replayed steps are judged anew, and the spike that caused the rollback is looked for where its data
now falls (a skip shifts the data of later steps earlier by the skipped length):

* it recurs at the same data: the data is at fault. Recommended: skip exactly that data (a different
  rollback, not the same one again).
* it recurs at the same steps although its data was skipped: neither the data nor a transient fault
  (model state, LR). Said, but not rolled back again: the same rollback would loop; a person decides.
* the replay passes it cleanly: with the data replayed, the spike was transient (as Megatron calls a
  fault that does not reproduce); with the data skipped, it is gone, cause unknown.

Each verdict is one ``rollback_outcome`` event for the rollback (subject ``rollback/<id>``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from tsm_service.config import SpikeConfig
from tsm_service.crud.events import recommend_rollback, record_event
from tsm_service.detectors import Finding
from tsm_service.models import Event, Job, RollbackRecommendation


@dataclass(frozen=True)
class Replay:
    """The latest resume of a job that carried out a rollback, and the trouble that rollback answered."""

    first_step: int
    abandoned_to: int
    rollback: RollbackRecommendation
    cause: Event
    cause_steps: tuple[int, int]

    @property
    def skipped(self) -> tuple[int, int] | None:
        r = self.rollback
        return (r.skip_from_step, r.skip_to_step) if r.skip_to_step >= r.skip_from_step else None

    def data_now_at(self) -> tuple[int, int] | None:
        """The replayed steps that consume the data of the cause's steps; None when it was skipped."""
        first, last = self.cause_steps
        if self.skipped is None:
            return first, last
        skip_from, skip_to = self.skipped
        if last < skip_from:
            return first, last
        if first > skip_to:
            shift = skip_to - skip_from + 1
            return first - shift, last - shift
        return None


def latest_replay(session: Session, *, job: Job) -> Replay | None:
    resumed = session.scalars(
        select(Event).where(Event.job_id == job.id, Event.kind == "resumed").order_by(Event.id.desc()).limit(1)
    ).one_or_none()
    if resumed is None or not resumed.evidence.get("rollback_id"):
        return None
    rollback = session.get(RollbackRecommendation, resumed.evidence["rollback_id"])
    cause = session.get(Event, rollback.event_id) if rollback else None
    if rollback is None or cause is None:
        return None
    last = int(cause.evidence.get("last_step", max(cause.step, rollback.skip_to_step)))
    return Replay(
        first_step=resumed.evidence["first_replayed_step"],
        abandoned_to=resumed.evidence["abandoned_to_step"],
        rollback=rollback,
        cause=cause,
        cause_steps=(cause.step, last),
    )


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def _outcome(
    session: Session, *, job: Job, replay: Replay, verdict: str, message: str, now: float, evidence: dict | None = None
) -> int | None:
    return record_event(
        session,
        job_id=job.id,
        kind="rollback_outcome",
        severity="critical" if verdict == "not_data" else "info",
        step=replay.cause.step,
        subject=f"rollback/{replay.rollback.id}",
        message=f"job {job.name}: {message}",
        evidence={
            "verdict": verdict,
            "rollback_id": replay.rollback.id,
            "cause_event_id": replay.cause.id,
            "cause_steps": list(replay.cause_steps),
            "data_now_at": replay.data_now_at(),
            **(evidence or {}),
        },
        now=now,
    )


def store_rollback_finding(
    session: Session, *, job: Job, finding: Finding, replay: Replay | None, config: SpikeConfig, now: float
) -> list[int]:
    """Record a finding that calls for a rollback, with the recommendation it earns; returns event ids."""
    first_bad, last_bad = finding.bad_steps
    recurrence = None
    if replay is not None and replay.first_step <= first_bad and finding.kind == replay.cause.kind:
        data_at = replay.data_now_at()
        if data_at is not None and _overlaps(data_at, finding.bad_steps):
            recurrence = "data"
        elif data_at is None and _overlaps(replay.cause_steps, finding.bad_steps):
            recurrence = "not_data"
    subject = finding.subject if recurrence is None else f"{finding.subject}/recurrence-after-rollback-{replay.rollback.id}"
    message = f"job {job.name}: {finding.message}"
    event_id = record_event(
        session,
        job_id=job.id,
        kind=finding.kind,
        severity=finding.severity,
        step=finding.step,
        subject=subject,
        message=message,
        evidence=finding.evidence,
        now=now,
    )
    if event_id is None:
        return []  # the same finding on the same steps: recommended once already
    ids = [event_id]
    if recurrence == "not_data":
        ids.append(
            _outcome(
                session,
                job=job,
                replay=replay,
                verdict="not_data",
                now=now,
                evidence={"recurrence_event_id": event_id},
                message=(
                    f"the {finding.kind} at steps {first_bad}..{last_bad} recurred after rollback "
                    f"{replay.rollback.id} skipped the data of steps {replay.skipped[0]}..{replay.skipped[1]}: "
                    f"not the data and not transient (model state or learning rate); not rolled back again, "
                    f"the same rollback would repeat itself"
                ),
            )
        )
        return [i for i in ids if i is not None]
    skip = True
    if recurrence == "data":
        ids.append(
            _outcome(
                session,
                job=job,
                replay=replay,
                verdict="data",
                now=now,
                evidence={"recurrence_event_id": event_id},
                message=(
                    f"the {finding.kind} of steps {replay.cause_steps[0]}..{replay.cause_steps[1]} recurred "
                    f"at the same data (steps {first_bad}..{last_bad}) after rollback {replay.rollback.id}: "
                    f"the data is at fault; recommending to skip it"
                ),
            )
        )
        message += f" (recurred at the same data after rollback {replay.rollback.id}: data at fault, skip it)"
    elif config.first_rollback == "rerun":
        skip = False
        message += " (rerun first: replay the same data; skip it only if the spike recurs there)"
    resume = max(0, first_bad - config.rollback_margin_steps)
    recommend_rollback(
        session,
        job_id=job.id,
        event_id=event_id,
        first_bad_step=first_bad,
        last_bad_step=last_bad if skip else resume - 1,
        margin_steps=config.rollback_margin_steps,
        reason=message,
        now=now,
    )
    return [i for i in ids if i is not None]


def judge_clean_replay(
    session: Session, *, job: Job, replay: Replay | None, upto_step: int | None, consecutive: int, now: float
) -> int | None:
    """Once the replay (judged up to ``upto_step``) is past where the cause's data (or steps) now fall with
    no recurrence, say so."""
    if replay is None or upto_step is None:
        return None
    data_at = replay.data_now_at()
    watched = data_at if data_at is not None else replay.cause_steps
    if upto_step < max(watched[1], replay.first_step) + consecutive:
        return None
    if data_at is not None:
        verdict, message = (
            "transient",
            (
                f"the {replay.cause.kind} of steps {replay.cause_steps[0]}..{replay.cause_steps[1]} did "
                f"not recur when rollback {replay.rollback.id} replayed its data (steps "
                f"{data_at[0]}..{data_at[1]}): transient"
            ),
        )
    else:
        verdict, message = (
            "skipped",
            (
                f"the {replay.cause.kind} of steps {replay.cause_steps[0]}..{replay.cause_steps[1]} did "
                f"not recur after rollback {replay.rollback.id} skipped its data; whether the data or a "
                f"transient fault caused it is not known (first_rollback: rerun tells them apart)"
            ),
        )
    return _outcome(session, job=job, replay=replay, verdict=verdict, message=message, now=now)
