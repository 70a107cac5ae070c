"""Prometheus metrics of one DMU app (own registry, so several apps can live in one process)."""

from __future__ import annotations

from collections import defaultdict

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from dmu_service.models import Run, RunStatus, Source

STAGES = ("read", "malformed", "undecodable", "too_long", "empty", "language", "exact_dup", "near_dup", "kept")


class RunsCollector:
    """Ingestion totals read from the runs table at scrape time (runs execute in CLI processes, not here)."""

    def __init__(self, session_factory: sessionmaker[Session]):
        self.session_factory = session_factory

    def collect(self):
        documents = GaugeMetricFamily(
            "heurimentor_dmu_documents", "documents per source and pipeline outcome, over non-discarded runs", labels=["source", "stage"]
        )
        filtered = GaugeMetricFamily("heurimentor_dmu_filtered_documents", "documents removed per quality rule", labels=["source", "rule"])
        tokens = GaugeMetricFamily("heurimentor_dmu_tokens", "tokens written to shards per source", labels=["source"])
        runs = GaugeMetricFamily("heurimentor_dmu_runs", "ingestion runs by status", labels=["status"])
        stage_totals: dict[tuple[str, str], int] = defaultdict(int)
        rule_totals: dict[tuple[str, str], int] = defaultdict(int)
        token_totals: dict[str, int] = defaultdict(int)
        status_totals = {status.value: 0 for status in RunStatus}
        with self.session_factory() as session:
            for source, status, counts in session.execute(select(Source.name, Run.status, Run.counts).join(Run.source)):
                status_totals[status] = status_totals.get(status, 0) + 1
                if status == RunStatus.discarded.value:
                    continue
                for stage in STAGES:
                    stage_totals[source, stage] += counts.get(stage, 0)
                for rule, n in counts.get("filtered", {}).items():
                    rule_totals[source, rule] += n
                token_totals[source] += counts.get("tokens", 0)
        for (source, stage), n in sorted(stage_totals.items()):
            documents.add_metric([source, stage], n)
        for (source, rule), n in sorted(rule_totals.items()):
            filtered.add_metric([source, rule], n)
        for source, n in sorted(token_totals.items()):
            tokens.add_metric([source], n)
        for status, n in sorted(status_totals.items()):
            runs.add_metric([status], n)
        yield from (documents, filtered, tokens, runs)


class DmuMetrics:
    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(RunsCollector(session_factory))
        self.requests = Counter("heurimentor_dmu_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram(
            "heurimentor_dmu_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
        )
        self.mixture_version = Gauge(
            "heurimentor_dmu_mixture_version", "current version of each mixture", ["mixture"], registry=self.registry
        )
        self.mixture_weight = Gauge(
            "heurimentor_dmu_mixture_weight",
            "normalised weight of each source in each mixture",
            ["mixture", "source"],
            registry=self.registry,
        )
        self.mixture_changes = Counter("heurimentor_dmu_mixture_changes", "mixture versions created", ["mixture"], registry=self.registry)
        self._weighted_sources: dict[str, set[str]] = {}
        self.rejected_changes = Counter(
            "heurimentor_dmu_mixture_rejected_changes",
            "mixture changes refused",
            ["mixture", "reason"],
            registry=self.registry,
        )

    def observe_mixture(self, name: str, version: int, weights: dict[str, float]) -> None:
        self.mixture_version.labels(name).set(version)
        for dropped in self._weighted_sources.get(name, set()) - set(weights):
            self.mixture_weight.remove(name, dropped)  # a dropped source must not keep its last weight
        for source, weight in weights.items():
            self.mixture_weight.labels(name, source).set(weight)
        self._weighted_sources[name] = set(weights)
