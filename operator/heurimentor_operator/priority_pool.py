"""The threads that run the operator's blocking API calls, serving pod creates and deletes first.

When many jobs arrive at once, every job's first pass queues its pods and its bookkeeping (status
write, Events, ConfigMap, Service). In one first-in-first-out queue the pods of the tenth job wait
behind nine jobs' bookkeeping, and the apiserver's capacity goes to writes no worker waits for.
Pods are what the training waits for, so they go first; the bookkeeping follows as the pod queue
drains. Calls of one priority keep their order, and nothing is dropped.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

PODS = 0  # pod creates and deletes, and the reads that decide them
BOOKKEEPING = 1  # status writes, Events, ConfigMap, Service, annotations


class PriorityThreadPool:
    """``max_workers`` threads taking calls lowest priority number first, then in submission order."""

    def __init__(self, max_workers: int, *, thread_name_prefix: str = "k8s"):
        self._queue: list[tuple[int, int, Future, Callable[..., Any], tuple[Any, ...]]] = []
        self._order = itertools.count()
        self._ready = threading.Condition()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"{thread_name_prefix}-{i}", daemon=True) for i in range(max_workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, priority: int, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        with self._ready:
            if self._closed:
                raise RuntimeError("the API call pool is shut down")
            heapq.heappush(self._queue, (priority, next(self._order), future, fn, args))
            self._ready.notify()
        return future

    def shutdown(self) -> None:
        """Cancel the calls still queued; calls in flight finish on their threads."""
        with self._ready:
            self._closed = True
            for _, _, future, _, _ in self._queue:
                future.cancel()
            self._queue.clear()
            self._ready.notify_all()

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    self._ready.wait()
                if not self._queue:
                    return
                _, _, future, fn, args = heapq.heappop(self._queue)
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as e:  # handed to the caller, as concurrent.futures does
                future.set_exception(e)
            else:
                future.set_result(result)
