"""The operator's API threads serve pod operations before bookkeeping (pure, no cluster)."""

from __future__ import annotations

import threading

import pytest

from heurimentor_operator.priority_pool import BOOKKEEPING, PODS, PriorityThreadPool


def occupy(pool: PriorityThreadPool) -> tuple[threading.Event, object]:
    """Hold the pool's only thread until the returned Event is set."""
    started, release = threading.Event(), threading.Event()
    busy = pool.submit(BOOKKEEPING, lambda: started.set() or release.wait())
    assert started.wait(5), "the pool never ran the first call"
    return release, busy


def test_queued_pod_calls_run_before_queued_bookkeeping_and_each_keeps_its_order():
    pool = PriorityThreadPool(1)
    release, busy = occupy(pool)
    ran: list[str] = []
    futures = [
        pool.submit(BOOKKEEPING, ran.append, "status"),
        pool.submit(PODS, ran.append, "pod-0"),
        pool.submit(BOOKKEEPING, ran.append, "event"),
        pool.submit(PODS, ran.append, "pod-1"),
    ]
    release.set()
    for future in [busy, *futures]:
        future.result(timeout=5)
    assert ran == ["pod-0", "pod-1", "status", "event"]
    pool.shutdown()


def test_errors_reach_the_caller_and_shutdown_cancels_what_is_queued():
    pool = PriorityThreadPool(1)
    with pytest.raises(ZeroDivisionError):
        pool.submit(PODS, lambda: 1 / 0).result(timeout=5)
    release, busy = occupy(pool)
    queued = pool.submit(BOOKKEEPING, lambda: "never")
    pool.shutdown()
    release.set()
    assert busy.result(timeout=5) is True
    assert queued.cancelled()
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(PODS, lambda: None)
