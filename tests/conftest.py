"""Fixtures for the real servers every suite tests against (implementations in hack/testenv/).

A fixture that cannot start its server raises ServerStartError with the tail of the server's log:
tests that need PostgreSQL, Prometheus or the control plane fail loudly, they are never skipped.
Server files live in temp dirs that are removed at the end of a passing session and kept (paths
printed) when any test failed.
"""

from __future__ import annotations

import itertools
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# hack/ (dev tooling, not an installed package) and tests/ import from the repository root, which
# pytest puts on sys.path (pythonpath in pyproject.toml).
from hack.testenv.kube import ControlPlane
from hack.testenv.postgres import PostgresServer
from hack.testenv.prometheus import PrometheusFactory

_db_counter = itertools.count()


def _session_failed(request: pytest.FixtureRequest) -> bool:
    return request.session.testsfailed > 0


def _report_kept(what: str, path: Path) -> None:
    sys.stderr.write(f"\n[heurimentor] tests failed: {what} logs kept in {path}\n")


@pytest.fixture(scope="session")
def pg_server(request: pytest.FixtureRequest) -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL 15 cluster for the whole session; `.create_database(name) -> url`."""
    server = PostgresServer()
    try:
        server.start()
    except BaseException:
        server.stop(keep_logs=True)
        raise
    yield server
    keep = _session_failed(request)
    server.stop(keep_logs=keep)
    if keep:
        _report_kept("PostgreSQL", server.base_dir)


@pytest.fixture
def postgres_url(pg_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database for one test: "postgresql+psycopg://postgres@127.0.0.1:<port>/<name>"."""
    stem = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40]
    name = f"t{next(_db_counter)}_{stem}"
    url = pg_server.create_database(name)
    yield url
    pg_server.drop_database(name)


@pytest.fixture(scope="session")
def prometheus(request: pytest.FixtureRequest) -> Iterator[PrometheusFactory]:
    """Factory: `prometheus.start(targets=[("job", "127.0.0.1:port")], rule_files=[...])` -> server handle
    with `.url`, `.query(promql)`, `.wait_for_scrape(job)`, `.stop()`; `prometheus.promtool` is promtool's path."""
    factory = PrometheusFactory()
    yield factory
    keep = _session_failed(request)
    factory.stop_all(keep_logs=keep)
    if keep:
        _report_kept("Prometheus", factory.base_dir)


@pytest.fixture(scope="session")
def kube(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    """The real control plane (etcd, kube-apiserver, controller-manager, scheduler, KWOK) for the session.

    `.kubeconfig` (admin), `.env` (KUBECONFIG + tools on PATH), `.kubectl(*args, check=True)`,
    `.api_client()`, `.user_kubeconfig(user, groups=())`, `.add_kwok_nodes(count, name_prefix,
    accelerator=None, gpus=0, labels=None)`, `.create_namespace(name)` (waits for its ServiceAccount).
    Fake nodes from the start: kwok-gpu-a100-0, kwok-gpu-h800-0 (8 x nvidia.com/gpu each), kwok-cpu-0.
    """
    state_dir = Path(tempfile.mkdtemp(prefix="heurimentor-kube-"))
    plane = ControlPlane(state_dir)
    plane.start()  # on failure it stops what it started and raises with the failing component's log tail
    yield plane
    plane.stop()
    if _session_failed(request):
        _report_kept("control-plane", plane.logs)
    else:
        shutil.rmtree(state_dir, ignore_errors=True)
