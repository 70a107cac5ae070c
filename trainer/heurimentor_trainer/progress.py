"""Rank 0 reports its progress to the operator by annotating its own pod.

The operator watches the job's pods anyway, so it reads ``heurimentor.io/progress`` (the contract in
``heurimentor.contracts.progress``) without any extra API call and fills the job's ``.status``
(step, loss, mixture version, ETA, last checkpoint).

Patches go out from a daemon thread; reports made while one is in flight are coalesced into the
newest. Training never waits for the apiserver and never fails because of it: an unreachable API,
missing credentials or missing RBAC are logged once as a warning, and the next report retries.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from heurimentor.contracts.progress import ANNOTATION_PROGRESS, encode_progress
from heurimentor_trainer.kube import PodPatcher

log = logging.getLogger(__name__)


class ProgressReporter:
    def __init__(self, pod: str, namespace: str, *, interval_steps: int, kubeconfig: str | None = None, request_timeout_s: float = 5.0):
        self.pod, self.namespace, self.kubeconfig = pod, namespace, kubeconfig
        self.interval_steps = interval_steps
        self.request_timeout_s = request_timeout_s
        self._progress: dict[str, Any] = {}
        self._dirty = False
        self._closing = False
        self._failing = False
        self._warned = False
        self._api: PodPatcher | None = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="progress-reporter", daemon=True)
        self._thread.start()

    def step(self, step: int, *, loss: float | None, mixture_version: int | None, tokens: int, force: bool = False) -> None:
        """Record a finished step; sent every ``interval_steps`` steps (or now with ``force``)."""
        self._record(
            {"step": step, "loss": loss, "mixtureVersion": mixture_version, "tokens": tokens}, send=force or step % self.interval_steps == 0
        )

    def checkpoint(self, step: int, path: str) -> None:
        """A checkpoint became the one a restart resumes from: always sent."""
        self._record({"checkpoint": {"step": step, "path": path}}, send=True)

    def _record(self, fields: dict[str, Any], *, send: bool) -> None:
        with self._cond:
            self._progress.update(fields)
            if send:
                self._dirty = True
                self._cond.notify()

    def close(self, timeout_s: float = 10.0) -> None:
        """Send what is pending (bounded by ``timeout_s``) and stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._dirty or self._closing)
                pending = dict(self._progress) if self._dirty else None
                self._dirty = False
                closing = self._closing
            if pending:
                self._send(pending)
            if closing:
                if self._api is not None:
                    self._api.close()
                return

    def _send(self, progress: dict[str, Any]) -> None:
        try:
            body = {"metadata": {"annotations": {ANNOTATION_PROGRESS: encode_progress(progress)}}}
            if self._api is None:
                self._api = PodPatcher(self.kubeconfig, timeout_s=self.request_timeout_s)
            self._api.patch_pod(self.namespace, self.pod, body)
        except Exception as e:  # noqa: BLE001 - whatever the API does (refused, 403, no credentials), training goes on
            self._failing = True
            if not self._warned:
                self._warned = True
                log.warning(
                    "cannot report progress on pod %s/%s (annotation %s); training continues, later reports retry: %s",
                    self.namespace,
                    self.pod,
                    ANNOTATION_PROGRESS,
                    e,
                )
            return
        if self._failing:
            self._failing = False
            log.info("progress reports reach pod %s/%s again", self.namespace, self.pod)
