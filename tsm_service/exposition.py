"""Prometheus exposition of the TSM (``GET /metrics``).

Job state is read from the database at scrape time (the series' last values and the jobs' live
summary), so every TSM replica serves the same numbers and a restart loses nothing. Names follow the
Prometheus guide: ``heurimentor_tsm_`` prefix, base units (seconds, ratios), ``_total`` counters.
Labels are bounded: ``job_name`` (jobs heard from within the TTL; not ``job``, which Prometheus
reserves for the scrape job and would rename to ``exported_job``), ``source`` (a mixture's sources, at most
MAX_SOURCES_PER_JOB), ``kind`` (the fixed event kinds). Per-layer series are not exported (unbounded);
the curves API serves them.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from heurimentor.contracts.metrics import IngestResult
from tsm_service.crud.events import count_events, count_rollbacks
from tsm_service.models import EVENT_KINDS, Job, PolicyState, Series

log = logging.getLogger(__name__)
disable_created_metrics()  # *_created series double the exposition and no dashboard uses them
PREFIX = "heurimentor_tsm"
MAX_SOURCES_PER_JOB = 64

# Trainer scalar name -> (metric name, help). Scalars not listed stay in the curves API only.
JOB_SCALARS = {
    "loss": ("job_loss", "Training loss at the latest step (nats per token)."),
    "grad_norm": ("job_grad_norm", "Global gradient norm at the latest step."),
    "global_tokens_per_second": ("job_throughput_tokens_per_second", "Training throughput of the whole job (tokens per second)."),
    "mfu": ("job_mfu_ratio", "Model FLOPs utilisation at the latest step (0..1)."),
    "lr": ("job_learning_rate", "Learning rate at the latest step."),
}
# Event kind -> dedicated counter, besides heurimentor_tsm_events_total{kind}.
EVENT_COUNTERS = {
    "loss_spike": ("loss_spikes", "Loss spikes detected."),
    "divergence": ("divergences", "Divergences detected (non-finite values, runaway grad norm)."),
    "mixture_update": ("mixture_updates", "Mixture versions the TSM wrote to the DMU."),
}


class JobStateCollector(Collector):
    def __init__(self, sessions: sessionmaker[Session], *, job_ttl_seconds: float):
        self.sessions = sessions
        self.job_ttl_seconds = job_ttl_seconds

    def collect(self) -> Iterator[Metric]:
        try:
            with self.sessions() as session:
                families = list(self._collect(session))
        except Exception:  # noqa: BLE001 - a scrape must not fail on a database hiccup; the up metric says so
            log.exception("collecting job metrics failed")
            families = [GaugeMetricFamily(f"{PREFIX}_database_up", "Whether the last scrape could read the database.", value=0)]
        yield from families

    def _collect(self, session: Session) -> Iterator[Metric]:
        yield GaugeMetricFamily(f"{PREFIX}_database_up", "Whether the last scrape could read the database.", value=1)
        jobs = {job.id: job for job in session.scalars(select(Job).where(Job.last_seen_at >= time.time() - self.job_ttl_seconds))}
        names = {job_id: job.name for job_id, job in jobs.items()}

        gauges = {key: GaugeMetricFamily(f"{PREFIX}_{metric}", doc, labels=["job_name"]) for key, (metric, doc) in JOB_SCALARS.items()}
        source_loss = GaugeMetricFamily(
            f"{PREFIX}_job_source_loss", "Training loss per data source (nats per token).", labels=["job_name", "source"]
        )
        validation_loss = GaugeMetricFamily(
            f"{PREFIX}_job_validation_loss", "Held-out validation loss per data source (nats per token).", labels=["job_name", "source"]
        )
        per_job_sources: dict[int, int] = defaultdict(int)
        for series in session.scalars(
            select(Series).where(Series.job_id.in_(jobs), Series.last_value.is_not(None)).order_by(Series.job_id, Series.kind, Series.name)
        ):
            job = names[series.job_id]
            if series.kind == "scalar" and series.name in gauges:
                gauges[series.name].add_metric([job], series.last_value)
            elif series.kind in ("source_loss", "val_loss"):
                per_job_sources[series.job_id] += 1
                if per_job_sources[series.job_id] <= 2 * MAX_SOURCES_PER_JOB:
                    (source_loss if series.kind == "source_loss" else validation_loss).add_metric([job, series.name], series.last_value)
        yield from gauges.values()
        yield source_loss
        yield validation_loss

        step = GaugeMetricFamily(f"{PREFIX}_job_step", "Latest optimizer step reported.", labels=["job_name"])
        last_step_time = GaugeMetricFamily(
            f"{PREFIX}_job_last_step_timestamp_seconds", "When the latest step finished (unix seconds, trainer clock).", labels=["job_name"]
        )
        tokens = CounterMetricFamily(f"{PREFIX}_job_tokens", "Tokens the job has consumed.", labels=["job_name"])
        step_time = GaugeMetricFamily(f"{PREFIX}_job_step_time_seconds", "Median step time over ranks.", labels=["job_name"])
        skew = GaugeMetricFamily(
            f"{PREFIX}_job_step_time_skew_ratio",
            "Slowest rank's median step time over the median of all ranks (1 = no skew).",
            labels=["job_name"],
        )
        version = GaugeMetricFamily(f"{PREFIX}_job_mixture_version", "Data mixture version the job trains on.", labels=["job_name"])
        completed = GaugeMetricFamily(
            f"{PREFIX}_job_completed", "1 once the run reached its final step (its silence is no stall).", labels=["job_name"]
        )
        suspended = GaugeMetricFamily(
            f"{PREFIX}_job_suspended", "1 while the operator has the job suspended (its silence is no stall).", labels=["job_name"]
        )
        written = {state.job_id: state.mixture_version for state in session.scalars(select(PolicyState))}
        for job in jobs.values():
            labels = [job.name]
            tokens.add_metric(labels, job.tokens_seen or 0)
            completed.add_metric(labels, 1.0 if job.completed_step is not None else 0.0)
            suspended.add_metric(labels, 1.0 if job.suspended_at is not None else 0.0)
            if job.last_step is not None:
                step.add_metric(labels, job.last_step)
                last_step_time.add_metric(labels, job.last_step_time or 0.0)
            if job.step_time_seconds is not None:
                step_time.add_metric(labels, job.step_time_seconds)
                skew.add_metric(labels, job.step_time_skew_ratio or 1.0)
            current = job.mixture_version if job.mixture_version is not None else written.get(job.id)
            if current is not None:
                version.add_metric(labels, current)
        yield from (step, last_step_time, tokens, step_time, skew, version, completed, suspended)

        events = count_events(session)
        by_kind = CounterMetricFamily(f"{PREFIX}_events", "Detector findings and actions, by kind.", labels=["job_name", "kind"])
        dedicated = {
            kind: CounterMetricFamily(f"{PREFIX}_{metric}", doc, labels=["job_name"]) for kind, (metric, doc) in EVENT_COUNTERS.items()
        }
        rollbacks = CounterMetricFamily(
            f"{PREFIX}_rollback_recommendations", "Rollback recommendations issued to the operator.", labels=["job_name"]
        )
        rollback_counts = count_rollbacks(session)
        for job in jobs.values():
            for kind in EVENT_KINDS:
                by_kind.add_metric([job.name, kind], events.get((job.name, kind), 0))
            for kind, family in dedicated.items():
                family.add_metric([job.name], events.get((job.name, kind), 0))
            rollbacks.add_metric([job.name], rollback_counts.get(job.name, 0))
        yield by_kind
        yield from dedicated.values()
        yield rollbacks


class Exposition:
    """The app's own registry: process counters plus the database-backed job state."""

    def __init__(self, sessions: sessionmaker[Session], *, job_ttl_seconds: float):
        self.registry = CollectorRegistry()
        self.batches = Counter(f"{PREFIX}_ingest_batches", "Metric batches received, by result.", ["result"], registry=self.registry)
        self.points = Counter(f"{PREFIX}_ingest_points", "Metric values stored.", registry=self.registry)
        self.non_finite = Counter(
            f"{PREFIX}_ingest_non_finite_values", "Non-finite metric values flagged as divergence.", registry=self.registry
        )
        for result in ("stored", "duplicate"):
            self.batches.labels(result)
        self.registry.register(JobStateCollector(sessions, job_ttl_seconds=job_ttl_seconds))

    def count_ingest(self, result: IngestResult) -> None:
        if result.duplicate:
            self.batches.labels("duplicate").inc()
            return
        self.batches.labels("stored").inc()
        self.points.inc(result.accepted_points)
        self.non_finite.inc(result.non_finite)

    def render(self) -> bytes:
        return generate_latest(self.registry)
