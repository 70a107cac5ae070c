"""Prometheus metrics of one DMU app (own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class DmuMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "heurimentor_dmu_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "heurimentor_dmu_http_request_duration_seconds", "HTTP request latency", ["method", "route"],
            registry=self.registry, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
        )
        self.mixture_version = Gauge(
            "heurimentor_dmu_mixture_version", "current version of each mixture", ["mixture"], registry=self.registry
        )
        self.mixture_weight = Gauge(
            "heurimentor_dmu_mixture_weight", "normalised weight of each source in each mixture",
            ["mixture", "source"], registry=self.registry,
        )
        self.mixture_changes = Counter(
            "heurimentor_dmu_mixture_changes", "mixture versions created", ["mixture"], registry=self.registry
        )
        self.rejected_changes = Counter(
            "heurimentor_dmu_mixture_rejected_changes", "mixture changes refused", ["mixture", "reason"],
            registry=self.registry,
        )
