"""Prometheus metrics of the operator (served on settings.metrics_port)."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server

JOBS_CREATED = Counter("heurimentor_operator_jobs_created_total", "Aquila2TrainingJobs the operator started reconciling")
JOBS_SUCCEEDED = Counter("heurimentor_operator_jobs_succeeded_total", "Aquila2TrainingJobs that finished with every worker exiting 0")
JOBS_FAILED = Counter("heurimentor_operator_jobs_failed_total", "Aquila2TrainingJobs marked Failed (backoff limit, deadline)")
JOBS_RESTARTED = Counter("heurimentor_operator_jobs_restarted_total", "Worker restarts (gang or elastic) after pod failures")
JOBS_ROLLED_BACK = Counter("heurimentor_operator_rollbacks_total", "Rollbacks applied (every worker restarted from an earlier checkpoint)")
TSM_RECOMMENDATIONS = Counter(
    "heurimentor_operator_tsm_rollback_recommendations_total",
    "TSM rollback recommendations closed, by outcome (acknowledged, dismissed)",
    ["outcome"],
)
TSM_ERRORS = Counter("heurimentor_operator_tsm_errors_total", "Failed passes following a job's TSM (unreachable, refused)")
PODS_CREATED = Counter("heurimentor_operator_pods_created_total", "Worker pods created")
PODS_DELETED = Counter("heurimentor_operator_pods_deleted_total", "Worker pods deleted")
RECONCILE_ERRORS = Counter("heurimentor_operator_reconcile_errors_total", "Reconciles that raised", ["kind"])
RECONCILE_SECONDS = Histogram(
    "heurimentor_operator_reconcile_duration_seconds",
    "Wall time of one reconcile of one job (read, plan, write)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

COUNTERS = {
    "created": JOBS_CREATED,
    "succeeded": JOBS_SUCCEEDED,
    "failed": JOBS_FAILED,
    "restarted": JOBS_RESTARTED,
    "rolled_back": JOBS_ROLLED_BACK,
}


_serving: set[int] = set()


def serve(port: int, registry: CollectorRegistry = REGISTRY) -> None:
    """Start the /metrics HTTP server in a daemon thread (once per port: an operator restarted
    in the same process keeps serving from the first)."""
    if port not in _serving:
        start_http_server(port, registry=registry)
        _serving.add(port)
