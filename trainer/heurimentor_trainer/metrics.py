"""Training signals for the TSM: per-step scalars, per-layer weight statistics, delivery, Prometheus.

Every rank sends its own ``StepPoint`` (its step time and throughput; rank 0 adds the global loss,
per-source loss, grad norm, MFU and the weight statistics) to ``POST /v1/jobs/{job}/metrics``.
Delivery runs on a background thread: the training loop only appends to a queue. Batches keep
their ``batch_id`` across retries (the TSM counts a batch once), stay buffered while the TSM is
down, and whatever is still undelivered at exit is spooled to disk and resent by the next start.
"""

from __future__ import annotations

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


class TSMSender:
    """Delivers metric points to the TSM off the training thread; buffered, retried, spooled at exit."""

    def __init__(self, base_url: str, job: str, rank: int, *, flush_interval: float = 2.0, spool_dir: str | None = None,
                 max_points: int = 1000, timeout: float = 5.0, token: str | None = None):
        self.url = f"{base_url.rstrip('/')}/v1/jobs/{job}/metrics"
        self.job, self.rank = job, rank
        self.flush_interval, self.max_points = flush_interval, min(max_points, MAX_POINTS_PER_BATCH)
        self.spool_dir = Path(spool_dir) if spool_dir else None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._outbox: deque[MetricBatch] = deque()  # built batches, oldest first; ids fixed
        self._headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
        self._http = httpx.Client(timeout=timeout)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tsm-sender", daemon=True)
        self.delivered_batches = 0
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
        return len(self._outbox)

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
            self._outbox.append(batch)
        if completed is not None:  # its own batch, after the last points
            self._outbox.append(MetricBatch(batch_id=self._batch_id(), completed_step=completed))

    def _batch_id(self) -> str:
        return f"{self.job}-r{self.rank}-{uuid.uuid4().hex}"

    def _send(self, batch: MetricBatch) -> bool:
        """True when the batch is done with (stored, duplicate, or rejected for good)."""
        try:
            response = self._http.post(self.url, content=batch.model_dump_json(), headers=self._headers)
        except httpx.HTTPError as e:
            if self.reachable:
                log.warning("TSM unreachable; metrics are buffered and retried", extra={"url": self.url, "error": repr(e)})
            self.reachable = False
            return False
        if response.status_code >= 500 or response.status_code in (408, 429):
            self.reachable = False
            log.warning("TSM answered %s; retrying", response.status_code, extra={"url": self.url})
            return False
        if response.status_code in (401, 403):  # our token, not the batch: keep it until a fixed token delivers it
            if self.reachable:
                log.error("TSM refused our token (metrics.tsm_token); metrics are buffered and retried",
                          extra={"url": self.url, "status": response.status_code})
            self.reachable = False
            return False
        if not self.reachable:
            log.info("TSM reachable again; sending buffered metrics", extra={"url": self.url, "buffered": len(self._outbox)})
        self.reachable = True
        if response.status_code >= 400:  # the batch itself is invalid: retrying cannot help
            log.error("TSM rejected a metric batch", extra={"batch_id": batch.batch_id, "status": response.status_code, "body": response.text[:500]})
        else:
            self.delivered_batches += 1
        return True

    def _flush(self) -> bool:
        self._drain()
        while self._outbox:
            if not self._send(self._outbox[0]):
                return False
            self._outbox.popleft()
        return True

    def _run(self) -> None:
        backoff = self.flush_interval
        while not self._stop.wait(backoff):
            backoff = self.flush_interval if self._flush() else min(backoff * 2, 30.0)

    def close(self, timeout: float = 10.0) -> None:
        """Stop; try to deliver for up to ``timeout`` s, then spool what is left to disk."""
        self._stop.set()
        self._thread.join()
        deadline = time.monotonic() + timeout
        while not self._flush() and time.monotonic() < deadline:
            time.sleep(0.2)
        self._http.close()
        if self._outbox:
            self._spool()

    def _spool(self) -> None:
        if self.spool_dir is None:
            log.error("TSM unreachable at exit and metrics.spool_dir unset: metric batches lost", extra={"batches": len(self._outbox)})
            return
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        for batch in self._outbox:
            path = self.spool_dir / f"{batch.batch_id}.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(batch.model_dump_json())
            os.replace(tmp, path)
        log.warning("TSM unreachable at exit; metric batches spooled for the next start",
                    extra={"batches": len(self._outbox), "spool_dir": str(self.spool_dir)})

    def _load_spool(self) -> None:
        if self.spool_dir is None or not self.spool_dir.is_dir():
            return
        for path in sorted(self.spool_dir.glob(f"{self.job}-r*.json")):
            claimed = path.with_suffix(f".claimed-{os.getpid()}")
            try:
                os.rename(path, claimed)  # atomic: one rank claims each spooled batch
            except FileNotFoundError:
                continue
            self._outbox.append(MetricBatch.model_validate_json(claimed.read_text()))
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
    log.info("step", extra={"step": point.step, **point.scalars,
                            "mixture_version": point.mixture_version,
                            "source_losses": {k: round(v, 4) for k, v in point.source_losses.items()}})
