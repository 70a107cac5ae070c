"""Training signals for the TSM: per-step scalars, per-layer weight statistics, delivery, Prometheus.

Every rank sends its own ``StepPoint`` (its step time and throughput; rank 0 adds the global loss,
per-source loss, grad norm, MFU and the weight statistics) to ``POST /v1/jobs/{job}/metrics``.
Delivery runs on a background thread: the training loop only appends to a queue. Batches keep
their ``batch_id`` across retries (the TSM counts a batch once), stay buffered while the TSM is
down, and whatever is still undelivered at exit is spooled to disk (``<spool_dir>/<job>/``) and
resent by the next start. A batch the TSM refuses or keeps failing on is narrowed down to the
points it cannot take and set aside, so the steps behind it still arrive (``TSMSender``).
"""

from __future__ import annotations

import enum
import logging
import os
import queue
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import httpx
import torch
import torch.distributed as dist
from pydantic import ValidationError
from torch import nn

from heurimentor.contracts.metrics import MAX_POINTS_PER_BATCH, EvalResult, LayerStat, MetricBatch, StepPoint

log = logging.getLogger(__name__)

# Dense bf16 peak of one device, for MFU. Unknown devices (and CPUs) need metrics.peak_tflops_per_device.
PEAK_TFLOPS_BF16 = {"H200": 989.0, "H100": 989.0, "H800": 989.0, "A100": 312.0, "A800": 312.0, "L40S": 362.0, "A10": 125.0}


def peak_flops(device: torch.device, configured_tflops: float | None) -> float | None:
    if configured_tflops:
        return configured_tflops * 1e12
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, tflops in PEAK_TFLOPS_BF16.items():
            if key in name:
                return tflops * 1e12
    return None


def _clean_name(name: str) -> str:
    for wrapper in ("module.", "_checkpoint_wrapped_module.", "_orig_mod."):
        name = name.replace(wrapper, "")
    return name


def _layer_of(name: str) -> str:
    parts = _clean_name(name).split(".")
    return ".".join(parts[:2]) if parts[0] == "layers" else parts[0]


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, "to_local") else t


class WeightStats:
    """Per-layer weight standard deviation and update norm (the report's weight-change signal).

    ``before_update`` snapshots the parameters (only on interval steps); ``after_update``
    returns, per layer, the std of all its weights and the norm of the change the optimizer
    step made. Under FSDP2 each rank holds shards: sums are all-reduced.
    """

    def __init__(self, model: nn.Module):
        self.groups: dict[str, list[nn.Parameter]] = {}
        for name, param in model.named_parameters():
            self.groups.setdefault(_layer_of(name), []).append(param)
        self.sharded = any(hasattr(p, "to_local") for p in model.parameters())
        self._snapshot: dict[str, list[torch.Tensor]] | None = None

    def before_update(self) -> None:
        self._snapshot = {layer: [_local(p).detach().clone() for p in params] for layer, params in self.groups.items()}

    @torch.no_grad()
    def after_update(self) -> list[LayerStat]:
        rows = []
        for layer, params in self.groups.items():
            locals_ = [_local(p).detach().float() for p in params]
            total = sum(t.sum() for t in locals_)
            squares = sum(t.pow(2).sum() for t in locals_)
            count = sum(t.numel() for t in locals_)
            update = torch.zeros((), device=total.device)
            if self._snapshot is not None:
                update = sum((t - s.float()).pow(2).sum() for t, s in zip(locals_, self._snapshot[layer]))
            rows.append(torch.stack([total, squares, torch.tensor(float(count), device=total.device), update]))
        stats = torch.stack(rows)
        if self.sharded and dist.is_initialized():
            dist.all_reduce(stats)
        result = []
        for layer, (total, squares, count, update) in zip(self.groups, stats.double().tolist()):
            mean = total / count
            std = max(squares / count - mean * mean, 0.0) ** 0.5 * (count / max(count - 1, 1)) ** 0.5
            result.append(LayerStat(layer=layer, weight_std=std, update_norm=update**0.5 if self._snapshot is not None else None))
        self._snapshot = None
        return result


@dataclass(frozen=True)
class _Completed:
    step: int


class _Outcome(enum.Enum):
    DELIVERED = "delivered"  # stored, or a duplicate of a stored batch
    REJECTED = "rejected"  # a 4xx about the batch itself: resending it cannot help
    SERVER_ERROR = "server_error"  # a 500 (or 501/505...): maybe this batch, maybe the TSM
    UNAVAILABLE = "unavailable"  # down, overloaded, or our token refused: nothing will get through now


@dataclass
class _Pending:
    batch: MetricBatch
    server_errors: int = 0
    suspect: bool = False  # a half of a batch the TSM kept failing on: bisected without waiting
    retry_at: float = 0.0  # parked: not before this time.monotonic()
    park_delay: float = 0.0


# 500s for one batch, with backoff, before it is bisected (to isolate the points the TSM fails on)
# and what remains set aside ("parked"), so the batches behind it flow.
SERVER_ERROR_ATTEMPTS = 4
PARKED_RETRY_S = (60.0, 3600.0)  # first and longest wait before a parked batch is tried again
MAX_PARKED_BATCHES = 1000
_UNAVAILABLE_STATUSES = {401, 403, 408, 429, 502, 503, 504}


def _reason(response: httpx.Response) -> str:
    """The TSM's reason (``detail``), for the one log line about a dropped batch."""
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        return response.text[:500]
    if isinstance(detail, list):
        detail = "; ".join(
            f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg', '')}" if isinstance(d, dict) else str(d) for d in detail[:5]
        )
    return str(detail)[:500]


def _about_items(response: httpx.Response) -> bool:
    """Whether a 4xx is about some of the batch's items (then its halves may fare better), not the
    URL or the request as a whole (then every half would be refused too)."""
    if response.status_code == 413:
        return True
    if response.status_code != 422:
        return False
    try:
        detail = response.json().get("detail")
    except ValueError:
        return False
    return not (
        isinstance(detail, list)
        and detail
        and all(isinstance(d, dict) and d.get("loc", [None])[:1] in (["path"], ["query"], ["header"]) for d in detail)
    )


def _halves(batch: MetricBatch) -> tuple[MetricBatch, MetricBatch] | None:
    """The batch in two (points, then evals), with ids derived from its own; None when it is one item."""
    items = [*batch.points, *batch.evals]
    if len(items) < 2:
        return None
    middle = len(items) // 2
    base = batch.batch_id if len(batch.batch_id) <= 196 else uuid.uuid4().hex

    def part(suffix: str, chunk: list) -> MetricBatch:
        return MetricBatch(
            batch_id=f"{base}.{suffix}",
            points=[i for i in chunk if isinstance(i, StepPoint)],
            evals=[i for i in chunk if not isinstance(i, StepPoint)],
            completed_step=batch.completed_step if suffix == "1" else None,
        )

    return part("0", items[:middle]), part("1", items[middle:])


class TSMSender:
    """Delivers metric points to the TSM off the training thread; buffered, retried, spooled at exit.

    One bad batch never holds back the others: a batch the TSM refuses (4xx) is bisected until the
    refused points are alone, and those are dropped with the TSM's reason logged once; a batch the
    TSM keeps failing on (500) is retried with backoff, then bisected the same way and the failing
    part parked — retried now and then, and spooled at exit — while later batches are delivered.
    When the TSM is down (connection refused, 502/503/504, 429) or refuses our token, everything
    waits in order instead.
    """

    def __init__(
        self,
        base_url: str,
        job: str,
        rank: int,
        *,
        flush_interval: float = 2.0,
        spool_dir: str | None = None,
        max_points: int = 1000,
        timeout: float = 5.0,
        token: str | None = None,
    ):
        self.url = f"{base_url.rstrip('/')}/v1/jobs/{job}/metrics"
        self.job, self.rank = job, rank
        self.flush_interval, self.max_points = flush_interval, min(max_points, MAX_POINTS_PER_BATCH)
        self.spool_dir = Path(spool_dir) / job if spool_dir else None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._outbox: deque[_Pending] = deque()  # built batches, oldest first; ids fixed
        self._parked: deque[_Pending] = deque()  # batches the TSM kept failing on, retried now and then
        self._headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
        self._http = httpx.Client(timeout=timeout)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tsm-sender", daemon=True)
        self.delivered_batches = 0
        self.dropped_items = 0  # points and evals the TSM refused for good
        self.reachable = True
        self._load_spool()
        self._thread.start()

    # called from the training thread: never blocks on the network
    def add_point(self, point: StepPoint) -> None:
        self._queue.put(point)

    def add_eval(self, result: EvalResult) -> None:
        self._queue.put(result)

    def complete(self, step: int) -> None:
        """The run reached its final step: say so after the last points (the TSM then reads the
        job's silence as done, not stalled)."""
        self._queue.put(_Completed(step))

    @property
    def buffered_batches(self) -> int:
        """Batches waiting for their first delivery (parked ones not counted)."""
        return len(self._outbox)

    @property
    def parked_batches(self) -> int:
        return len(self._parked)

    def _drain(self) -> None:
        points, evals, completed = [], [], None
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Completed):
                completed = item.step
            else:
                (points if isinstance(item, StepPoint) else evals).append(item)
        while points or evals:
            batch = MetricBatch(batch_id=self._batch_id(), points=points[: self.max_points], evals=evals[: self.max_points])
            points, evals = points[self.max_points :], evals[self.max_points :]
            self._outbox.append(_Pending(batch))
        if completed is not None:  # its own batch, after the last points
            self._outbox.append(_Pending(MetricBatch(batch_id=self._batch_id(), completed_step=completed)))

    def _batch_id(self) -> str:
        # Unique per job (the TSM keys batches by job and id); the job is in the URL, and in the id
        # a long job name would push it past the 200 characters a batch id may have.
        return f"r{self.rank}-{uuid.uuid4().hex}"

    def _send(self, batch: MetricBatch) -> tuple[_Outcome, httpx.Response | None]:
        try:
            response = self._http.post(self.url, content=batch.model_dump_json(), headers=self._headers)
        except httpx.HTTPError as e:
            if self.reachable:
                log.warning("TSM unreachable; metrics are buffered and retried", extra={"url": self.url, "error": repr(e)})
            self.reachable = False
            return _Outcome.UNAVAILABLE, None
        status = response.status_code
        if status in _UNAVAILABLE_STATUSES:
            if self.reachable:
                if status in (401, 403):  # our token, not the batch: keep it until a fixed token delivers it
                    log.error(
                        "TSM refused our token (metrics.tsm_token); metrics are buffered and retried",
                        extra={"url": self.url, "status": status},
                    )
                else:
                    log.warning("TSM answered %s; metrics are buffered and retried", status, extra={"url": self.url})
            self.reachable = False
            return _Outcome.UNAVAILABLE, response
        if not self.reachable:
            log.info("TSM reachable again; sending buffered metrics", extra={"url": self.url, "buffered": len(self._outbox)})
        self.reachable = True
        if status >= 500:
            return _Outcome.SERVER_ERROR, response
        if status >= 400:
            return _Outcome.REJECTED, response
        self.delivered_batches += 1
        return _Outcome.DELIVERED, response

    def _settle(self, pending: _Pending, outcome: _Outcome, response: httpx.Response | None) -> list[_Pending]:
        """What replaces ``pending`` (already taken off its queue) after a failed send."""
        about_items = outcome is _Outcome.SERVER_ERROR or (response is not None and _about_items(response))
        halves = _halves(pending.batch) if about_items else None
        if halves is not None:
            suspect = outcome is _Outcome.SERVER_ERROR
            return [_Pending(half, suspect=suspect) for half in halves]
        items = len(pending.batch.points) + len(pending.batch.evals)
        if outcome is _Outcome.REJECTED:
            self.dropped_items += items
            log.error(
                "TSM rejected metrics; dropped",
                extra={
                    "batch_id": pending.batch.batch_id,
                    "status": response.status_code if response else None,
                    "reason": _reason(response) if response else "",
                    "points": len(pending.batch.points),
                    "evals": len(pending.batch.evals),
                    "steps": sorted({p.step for p in pending.batch.points})[:10],
                },
            )
            return []
        self._park(pending, reason=_reason(response) if response else "")
        return []

    def _park(self, pending: _Pending, *, reason: str) -> None:
        first, longest = PARKED_RETRY_S
        pending.park_delay = min(longest, pending.park_delay * 2) if pending.park_delay else first
        pending.retry_at = time.monotonic() + pending.park_delay
        if pending.park_delay == first:
            log.error(
                "TSM keeps failing on a metric batch; parked, later batches go on",
                extra={
                    "batch_id": pending.batch.batch_id,
                    "reason": reason,
                    "retry_in_s": pending.park_delay,
                    "steps": sorted({p.step for p in pending.batch.points})[:10],
                },
            )
        self._parked.append(pending)
        if len(self._parked) > MAX_PARKED_BATCHES:
            lost = self._parked.popleft()
            self.dropped_items += len(lost.batch.points) + len(lost.batch.evals)
            log.error("too many parked metric batches; the oldest is dropped", extra={"batch_id": lost.batch.batch_id})

    def _flush(self) -> bool:
        """Send what is due; False when the TSM is unavailable or failing (back off before the next try)."""
        self._drain()
        while self._outbox:
            pending = self._outbox.popleft()
            outcome, response = self._send(pending.batch)
            if outcome is _Outcome.DELIVERED:
                continue
            if outcome is _Outcome.UNAVAILABLE:
                self._outbox.appendleft(pending)
                return False
            if outcome is _Outcome.SERVER_ERROR and not pending.suspect:
                pending.server_errors += 1
                if pending.server_errors < SERVER_ERROR_ATTEMPTS:
                    self._outbox.appendleft(pending)
                    return False
            self._outbox.extendleft(reversed(self._settle(pending, outcome, response)))
        return self._retry_parked(due_only=True)

    def _retry_parked(self, *, due_only: bool) -> bool:
        now = time.monotonic()
        for _ in range(len(self._parked)):
            pending = self._parked.popleft()
            if due_only and pending.retry_at > now:
                self._parked.append(pending)
                continue
            outcome, response = self._send(pending.batch)
            if outcome is _Outcome.UNAVAILABLE:
                self._parked.appendleft(pending)
                return False
            if outcome is _Outcome.SERVER_ERROR:
                self._park(pending, reason=_reason(response) if response else "")
            elif outcome is _Outcome.REJECTED:
                self._settle(pending, outcome, response)
        return True

    def _run(self) -> None:
        backoff = self.flush_interval
        while not self._stop.wait(backoff):
            backoff = self.flush_interval if self._flush() else min(backoff * 2, 30.0)

    def close(self, timeout: float = 10.0) -> None:
        """Stop; try to deliver for up to ``timeout`` s (parked batches once more), then spool what is left."""
        self._stop.set()
        self._thread.join()
        deadline = time.monotonic() + timeout
        while not self._flush() and time.monotonic() < deadline:
            time.sleep(0.2)
        if self._parked and time.monotonic() < deadline:
            self._retry_parked(due_only=False)
        self._http.close()
        if self._outbox or self._parked:
            self._spool()

    def _spool(self) -> None:
        left = [*self._outbox, *self._parked]
        if self.spool_dir is None:
            log.error("TSM unreachable at exit and metrics.spool_dir unset: metric batches lost", extra={"batches": len(left)})
            return
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        for pending in left:
            path = self.spool_dir / f"{pending.batch.batch_id}.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(pending.batch.model_dump_json())
            os.replace(tmp, path)
        log.warning(
            "metric batches undelivered at exit; spooled for the next start",
            extra={"batches": len(left), "parked": len(self._parked), "spool_dir": str(self.spool_dir)},
        )

    def _load_spool(self) -> None:
        if self.spool_dir is None or not self.spool_dir.is_dir():
            return
        for path in sorted(self.spool_dir.glob("r*.json")):
            claimed = path.with_suffix(f".claimed-{os.getpid()}")
            try:
                os.rename(path, claimed)  # atomic: one rank claims each spooled batch
            except FileNotFoundError:
                continue
            try:
                self._outbox.append(_Pending(MetricBatch.model_validate_json(claimed.read_text())))
            except ValidationError as e:  # written by an older trainer with other bounds: keep it for a human
                os.replace(claimed, path.with_suffix(".invalid"))
                log.error(
                    "spooled metric batch is invalid; kept aside", extra={"path": str(path.with_suffix(".invalid")), "error": str(e)[:500]}
                )
                continue
            claimed.unlink()
        if self._outbox:
            log.info("resending spooled metric batches", extra={"batches": len(self._outbox)})


class PrometheusMetrics:
    """Gauges/counters labelled by job and rank; one HTTP endpoint per node for all its ranks.

    With ``multiproc_dir`` the ranks on a node write prometheus_client's multiprocess files
    there and local rank 0 serves their aggregate; the directory must be set before
    prometheus_client is first imported in the process.
    """

    def __init__(self, job: str, rank: int, local_rank: int, *, port: int | None, multiproc_dir: str | None):
        if multiproc_dir:
            Path(multiproc_dir).mkdir(parents=True, exist_ok=True)
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = multiproc_dir
        import prometheus_client as prom
        from prometheus_client import multiprocess, values

        self.multiproc = bool(multiproc_dir)
        if self.multiproc and values.ValueClass.__name__ == "MutexValue":
            raise RuntimeError("metrics.prometheus_dir: prometheus_client was imported before the multiprocess directory was set")
        self.labels = {"job": job, "rank": str(rank)}
        self.registry = prom.CollectorRegistry()
        mode = {"multiprocess_mode": "livemostrecent"}

        def gauge(name: str, doc: str, extra: tuple[str, ...] = ()):
            return prom.Gauge(name, doc, ["job", "rank", *extra], registry=self.registry, **mode)

        self.loss = gauge("heurimentor_train_loss", "training loss of the last step (global mean)")
        self.source_loss = gauge("heurimentor_train_source_loss", "training loss per data source", ("source",))
        self.val_loss = gauge("heurimentor_train_val_loss", "held-out validation loss per data source", ("source",))
        self.downstream = gauge("heurimentor_train_downstream_score", "downstream task score", ("task",))
        self.grad_norm = gauge("heurimentor_train_grad_norm", "gradient norm before clipping")
        self.lr = gauge("heurimentor_train_learning_rate", "learning rate")
        self.step = gauge("heurimentor_train_step", "last completed optimizer step")
        self.step_time = gauge("heurimentor_train_step_time_seconds", "wall time of the last step on this rank")
        self.tokens_per_second = gauge("heurimentor_train_tokens_per_second", "tokens per second on this rank")
        self.mfu = gauge("heurimentor_train_mfu", "model FLOPs utilisation (0..1)")
        self.mixture_version = gauge("heurimentor_train_mixture_version", "mixture version the last step used")
        self.tsm_buffered = gauge("heurimentor_train_tsm_buffered_batches", "metric batches waiting for the TSM")
        self.tokens = prom.Counter("heurimentor_train_tokens", "tokens trained on by this rank", ["job", "rank"], registry=self.registry)
        if local_rank == 0 and port is not None:
            serve = prom.CollectorRegistry() if self.multiproc else self.registry
            if self.multiproc:
                multiprocess.MultiProcessCollector(serve, path=multiproc_dir)
            prom.start_http_server(port, registry=serve)
            log.info("prometheus metrics served", extra={"port": port, "multiprocess": self.multiproc})

    def set(self, gauge, value: float | None, **labels: str) -> None:
        if value is not None:
            gauge.labels(**self.labels, **labels).set(value)

    def close(self) -> None:
        if self.multiproc:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())


def log_step(point: StepPoint) -> None:
    log.info(
        "step",
        extra={
            "step": point.step,
            **point.scalars,
            "mixture_version": point.mixture_version,
            "source_losses": {k: round(v, 4) for k, v in point.source_losses.items()},
        },
    )
