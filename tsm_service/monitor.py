"""Evaluate jobs: run the detectors over what arrived since the last evaluation, store findings as
events (with rollback recommendations for spikes and divergence), then let the mixture policy act."""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tsm_service.config import Settings, SpikeConfig
from tsm_service.crud.events import list_events, record_event
from tsm_service.crud.jobs import get_job, job_config
from tsm_service.crud.loss_curve import loss_curve
from tsm_service.crud.windows import latest_event_step, layer_std_window, per_rank_window, scalar_window, step_before_reports
from tsm_service.detectors import (
    Finding,
    detect_grad_norm_runaway,
    detect_loss_spikes,
    detect_plateau,
    detect_stall,
    detect_stragglers,
    detect_weight_change,
)
from tsm_service.detectors.ranks import step_time_skew
from tsm_service.mixer import MixtureUpdater
from tsm_service.models import Job
from tsm_service.rollbacks import Replay, judge_clean_replay, latest_replay, store_rollback_finding
from tsm_service.schemas.events import EventPublic

log = logging.getLogger(__name__)


class Monitor:
    def __init__(self, sessions: sessionmaker[Session], settings: Settings, updater: MixtureUpdater):
        self.sessions = sessions
        self.settings = settings
        self.updater = updater

    def evaluate(self, job_name: str, now: float) -> list[EventPublic]:
        """Evaluate one job now; returns the events this evaluation created."""
        with self.sessions() as session:
            job = get_job(session, name=job_name)
            if job is None:
                raise LookupError(f"job {job_name!r} has sent no metrics to this TSM")
            event_ids = self._detect(session, job=job, now=now)
            config = job_config(job, settings=self.settings)
            event_ids += self.updater.run(session, job=job, config=config.policy, now=now)
            if job.last_step is not None:
                job.evaluated_step = job.last_step
            session.commit()
            if not event_ids:
                return []
            wanted = set(event_ids)
            return [e for e in list_events(session, job=job, since_id=min(wanted) - 1, limit=1000) if e.id in wanted]

    def _detect(self, session: Session, *, job: Job, now: float) -> list[int]:
        detectors = job_config(job, settings=self.settings).detectors
        history = max(2 * detectors.spike.window, 2 * detectors.divergence.window, detectors.plateau.window) + 1
        after = job.evaluated_step - history
        findings: list[Finding] = []

        curve = loss_curve(session, job_id=job.id, after_step=after)
        findings += detect_loss_spikes(curve, detectors.spike)
        # A mixture change, LR restart or rescale moves the level on purpose: judge the plateau after it.
        since = int(max(curve.version_starts()[-1], curve.segment_starts()[-1])) if len(curve) else 0
        plateau = detect_plateau(curve.steps[since:], curve.loss[since:], detectors.plateau)
        last_plateau = latest_event_step(session, job_id=job.id, kind="plateau")
        if plateau is not None and (last_plateau is None or plateau.evidence["first_step"] > last_plateau):
            findings.append(plateau)
        steps, grad_norm = scalar_window(session, job_id=job.id, name="grad_norm", after_step=after)
        findings += detect_grad_norm_runaway(steps, grad_norm, detectors.divergence, segment_start=curve.segment_starts_for(steps))

        stall = (
            None
            if job.completed_step is not None or job.suspended_at is not None
            else detect_stall(last_step=job.last_step, last_step_time=job.last_step_time, now=now, config=detectors.stall)
        )
        if stall is not None:
            findings.append(stall)  # one per stalled step: the unique key drops repeats

        window_start, step_times = per_rank_window(session, job_id=job.id, name="step_time_seconds", reports=detectors.straggler.window)
        skew = step_time_skew(step_times)
        if skew is not None:
            job.step_time_seconds, job.step_time_skew_ratio = skew
        if job.last_step is not None:
            for finding in detect_stragglers(step=job.last_step, step_times=step_times, config=detectors.straggler):
                previous = latest_event_step(session, job_id=job.id, kind="straggler", subject=finding.subject)
                if previous is None or previous < window_start:
                    findings.append(finding)

        floor = step_before_reports(
            session, job_id=job.id, kind="layer_weight_std", upto_step=job.evaluated_step, reports=detectors.weight_change.window + 1
        )
        w_steps, tokens, layers, layer_std = layer_std_window(session, job_id=job.id, after_step=floor)
        findings += detect_weight_change(steps=w_steps, tokens=tokens, layers=layers, layer_std=layer_std, config=detectors.weight_change)
        replay = latest_replay(session, job=job)
        event_ids = self._store(session, job=job, findings=findings, now=now, replay=replay, spike=detectors.spike)
        outcome = judge_clean_replay(
            session, job=job, replay=replay, upto_step=job.last_step, consecutive=detectors.spike.consecutive, now=now
        )
        return event_ids + ([outcome] if outcome is not None else [])

    def _store(
        self, session: Session, *, job: Job, findings: list[Finding], now: float, replay: Replay | None, spike: SpikeConfig
    ) -> list[int]:
        event_ids = []
        for finding in findings:
            if finding.kind not in ("plateau", "stall", "straggler") and finding.confirmed_at <= job.evaluated_step:
                continue  # reported by an earlier evaluation
            if finding.bad_steps is not None:
                stored = store_rollback_finding(session, job=job, finding=finding, replay=replay, config=spike, now=now)
            else:
                event_id = record_event(
                    session,
                    job_id=job.id,
                    kind=finding.kind,
                    severity=finding.severity,
                    step=finding.step,
                    subject=finding.subject,
                    message=f"job {job.name}: {finding.message}",
                    evidence=finding.evidence,
                    now=now,
                )
                stored = [] if event_id is None else [event_id]
            if stored:
                log.warning(
                    "finding",
                    extra={
                        "job": job.name,
                        "kind": finding.kind,
                        "step": finding.step,
                        "subject": finding.subject,
                        "detail": finding.message,
                    },
                )
            event_ids += stored
        return event_ids

    def evaluate_all(self, now: float) -> int:
        """Evaluate every job heard from within the metrics TTL; returns how many events were created."""
        with self.sessions() as session:
            names = list(session.scalars(select(Job.name).where(Job.last_seen_at >= now - self.settings.metrics_job_ttl_seconds)))
        created = 0
        for name in names:
            try:
                created += len(self.evaluate(name, now))
            except Exception:  # noqa: BLE001 - one bad job must not stop the others being watched
                log.exception("evaluation failed", extra={"job": name})
        return created

    async def run_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await asyncio.to_thread(self.evaluate_all, time.time())
