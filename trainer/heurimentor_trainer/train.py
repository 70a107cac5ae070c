"""One elastic training worker: ``torchrun --nnodes=MIN:MAX --rdzv-backend=c10d … -m heurimentor_trainer.train --config …``.

``Trainer(cfg)`` does the setup once per rendezvous (process group, batch split, data, the model
built on ``meta`` → parallelized → materialised → initialised, optimizer, resume, reporters);
``Trainer.train_step()`` runs one optimizer step and returns its ``StepPoint``; ``Trainer.train()``
loops over step, evaluate, report and checkpoint.

Each step: adopt a newly published mixture (at the step boundary, the same on every rank),
plan the global batch, run this rank's micro batches with gradient accumulation, clip, step,
report. The global batch is fixed by the config, so a rescale changes only how many micro
batches each rank accumulates, never the samples or the loss curve.
"""

from __future__ import annotations

import faulthandler
import logging
import math
import signal
import time
from dataclasses import asdict

import torch
import torch.distributed as dist
import torch.nn.functional as F

from heurimentor.contracts.batch import BatchSplitError, describe_split, pool_throughputs, rows_per_rank
from heurimentor.contracts.metrics import EvalResult, StepPoint
from heurimentor.contracts.shards import ShardFormatError
from heurimentor.logs import configure_logging
from heurimentor_trainer import checkpoint as ckpt, parallelize as par
from heurimentor_trainer.checkpoint import TrainState
from heurimentor_trainer.config import ConfigError, DistEnv, PodEnv, TrainConfig, parse_args
from heurimentor_trainer.data import (
    Batch,
    MixtureDataLoader,
    MixturePoller,
    MixtureSampler,
    SampleLog,
    SourceSet,
    batch_slices,
    sync_mixture,
)
from heurimentor_trainer.evals import build_downstream, validation_loss
from heurimentor_trainer.metrics import PrometheusMetrics, TSMSender, WeightStats, log_step, peak_flops
from heurimentor_trainer.model import ModelConfigError, build_model
from heurimentor_trainer.presets import get_preset
from heurimentor_trainer.progress import ProgressReporter

log = logging.getLogger("heurimentor_trainer.train")


def plan_batch_split(cfg: TrainConfig, global_batch: int, world_size: int) -> list[int]:
    """Rows of the global batch per rank, from the (pool, relative_throughput) every rank states.

    Collective. Each rank says only which pool it is in and how fast that pool is, facts that do
    not change when the job scales, so a worker whose mounted ConfigMap is older than its peers'
    computes the same split as they do (heurimentor.contracts.batch, also the operator's status).
    """
    ranks = [(cfg.pool, cfg.relative_throughput)] * world_size
    if dist.is_initialized():
        dist.all_gather_object(ranks, (cfg.pool, cfg.relative_throughput))
    try:
        counts = rows_per_rank(global_batch, ranks, micro_batch=cfg.micro_batch)
    except BatchSplitError as e:
        raise ConfigError(str(e)) from e
    if not dist.is_initialized() or dist.get_rank() == 0:
        _, disagree = pool_throughputs(ranks)
        if disagree:
            log.warning(
                "ranks of one pool state different relative_throughput (a config change still reaching its pods); "
                "every rank uses the value of the pool's lowest rank",
                extra={"pools": disagree},
            )
        log.info(
            "batch split",
            extra={"global_batch": global_batch, "world_size": world_size, "rows": counts, "pools": describe_split(ranks, counts)},
        )
    return counts


def micro_batches(rows: list[int], rank: int, micro_batch: int) -> list[tuple[slice, float]]:
    """This rank's rows cut into as many micro batches as every other rank runs: (rows, loss weight).

    Under FSDP2 every micro batch's forward and backward all-gather each block, so ranks running
    different counts wait on each other until the collective times out (seen with heterogeneous
    pools: 9 and 3 rows). Every rank runs the largest rank's count, ``ceil(rows / micro_batch)``;
    smaller ranks run smaller micro batches, and one with fewer rows than passes repeats its last
    row with loss weight 0 (collectives only, no gradient).
    """
    passes = max(math.ceil(r / micro_batch) for r in rows)
    mine, start, plan = rows[rank], 0, []
    for j in range(passes):
        size = mine // passes + (j < mine % passes)
        plan.append((slice(start, start + size), 1.0) if size else (slice(mine - 1, mine), 0.0))
        start += size
    return plan


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, lr: float) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not on norm gains or the embedding table)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if param.ndim < 2 or "tok_embeddings" in name else decay).append(param)
    o = cfg.optim
    groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(o.beta1, o.beta2), eps=o.eps, foreach=True)


def lr_at(step: int, *, base: float, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up to ``base`` over ``warmup`` steps, then cosine decay to ``base * min_ratio``."""
    if step <= warmup:
        return base * step / max(warmup, 1)
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def pending_data_skip(pod: PodEnv, resumed_at: int, applied: list[str]) -> tuple[int, int, str] | None:
    """(step, batches, request) of a rollback's data skip still to do in this launch, if any.

    The data of steps FROM..TO of the first run is skipped once: at the first step this run trains
    in that range, the sampler moves past the batches the range has left. Whether it was done is
    recorded in the checkpoints written after it, so a restart from before it skips again, one from
    after it does not.
    """
    if not pod.rollback_skip_steps:
        return None
    first, last = pod.rollback_skip_steps
    request = f"attempt {pod.attempt or '-'}: steps {first}-{last}"
    start = max(first, resumed_at + 1)
    if request in applied or start > last:
        return None
    return start, last - start + 1, request


class Trainer:
    """One worker's training run: ``__init__`` sets up, ``train_step`` steps, ``train`` loops."""

    def __init__(self, cfg: TrainConfig, *, env: DistEnv | None = None, pod: PodEnv | None = None):
        self.cfg, self.env, self.pod = cfg, env or DistEnv.from_env(), pod or PodEnv.from_env()
        self.poller = self.sender = self.prom = self.progress = None  # reporters, started last
        self.device = par.pick_device(cfg.device, self.env)
        par.init_distributed(self.env, self.device)
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        ckpt.seed_everything(cfg.seed + self.rank)
        preset = get_preset(cfg.preset, **cfg.model)
        self.args = preset.model
        self.seq_len = cfg.seq_len or self.args.max_seq_len
        if self.seq_len > self.args.max_seq_len:
            raise ConfigError(f"seq_len={self.seq_len} exceeds the model's max_seq_len={self.args.max_seq_len}")
        self.global_batch = cfg.global_batch or preset.global_batch_size
        self.base_lr = cfg.optim.lr or preset.lr
        self.last_step = min(cfg.steps, cfg.stop_at_step or cfg.steps)
        self.rows = plan_batch_split(cfg, self.global_batch, self.world)
        self.micro_batches = micro_batches(self.rows, self.rank, cfg.micro_batch)
        self.sources = SourceSet(
            cfg.data.shard_root,
            self.seq_len,
            names=cfg.data.sources,
            vocab_size=self.args.vocab_size,
            val_samples_per_source=cfg.data.val_samples_per_source,
            tokenizer_id=cfg.data.tokenizer_id,
        )
        self.manager = ckpt.CheckpointManager(cfg.checkpoint.dir, keep=cfg.checkpoint.keep) if cfg.checkpoint.dir else None
        self.resume_from, saved = self._checkpoint_to_resume()  # its shape is checked before any work
        try:
            self.tasks = [build_downstream(spec) for spec in cfg.metrics.downstream]
        except (ValueError, OSError) as e:
            raise ConfigError(f"metrics.downstream: {e}") from e

        self.model = par.parallelize(
            build_model(self.args, device="meta"),
            self.device,
            seed=cfg.seed,
            shard=cfg.fsdp,
            activation_checkpointing=cfg.activation_checkpointing,
            compile=cfg.compile,
        )
        self.optimizer = build_optimizer(self.model, cfg, self.base_lr)
        weights = cfg.data.static_weights or {name: 1.0 for name in self.sources.names}
        self.sampler = MixtureSampler(self.sources.names, self.sources.train_sizes, seed=cfg.seed, weights=weights)
        self.state = TrainState(
            world_size=self.world,
            model_args=asdict(self.args),
            global_batch=self.global_batch,
            seq_len=self.seq_len,
            lr_schedule={"base": self.base_lr, "warmup": cfg.optim.warmup_steps, "total": cfg.steps, "min_ratio": cfg.optim.min_lr_ratio},
        )
        if saved:
            self.manager.load(self.resume_from, self.model, self.optimizer, seed=cfg.seed)
            self.sampler.load_state_dict(saved.sampler)
            self.state.step, self.state.tokens_seen = saved.step, saved.tokens_seen
            self.state.data_skips = list(saved.data_skips)  # applied ones travel with the sampler state
        self.skip = pending_data_skip(self.pod, self.state.step, self.state.data_skips)
        self.loader = MixtureDataLoader(
            self.sources, self.sampler, global_batch=self.global_batch, rank_slice=batch_slices(self.rows)[self.rank]
        )
        self.sample_log = SampleLog(cfg.data.sample_log_dir, self.rank) if cfg.data.sample_log_dir else None
        self.weight_stats = WeightStats(self.model)
        self.autocast = par.autocast(self.device)
        self.peak = peak_flops(self.device, cfg.metrics.peak_tflops_per_device)
        self.flops_per_token = self.args.flops_per_token(self.seq_len)
        # Per source: (loss sum, tokens) of the last step over all ranks; what a mixture policy observes.
        self.source_sums: dict[str, tuple[float, float]] = {}
        try:
            self._start_reporters()
        except BaseException:
            self.close()
            raise

    def _checkpoint_to_resume(self):
        cfg, pod, manager = self.cfg, self.pod, self.manager
        if pod.rollback_to_step is not None:
            if not manager:
                raise ConfigError(f"HEURIMENTOR_ROLLBACK_TO_STEP={pod.rollback_to_step} needs checkpoint.dir")
            if self.rank == 0:  # one request per attempt: the operator sets the env on every pod of the rollback's attempt
                manager.rollback(pod.rollback_to_step, request=f"attempt {pod.attempt or '-'}: step {pod.rollback_to_step}")
            if dist.is_initialized():
                dist.barrier()  # no rank reads "latest" before the rollback moved it
        folder = manager.latest() if manager and cfg.checkpoint.resume else None
        saved = manager.read_state(folder, self.args) if folder else None
        self._same_resume_step_on_every_rank(saved.step if saved else 0)
        if saved and saved.seq_len != self.seq_len:
            log.warning(
                "seq_len changed since the checkpoint: samples are cut on a new grid, so the data stream does not continue exactly",
                extra={"checkpoint_seq_len": saved.seq_len, "seq_len": self.seq_len},
            )
        return folder, saved

    def _same_resume_step_on_every_rank(self, step: int) -> None:
        """Ranks that would resume at different steps would train different steps in lockstep and
        hang at the end: the checkpoint directory is not one every worker sees (an emptyDir per pod)."""
        if not dist.is_initialized() or dist.get_world_size() == 1:
            return
        low, high = torch.tensor([step], device=self.device), torch.tensor([step], device=self.device)
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        if low.item() != high.item():
            raise ConfigError(
                f"checkpoint.dir: ranks would resume at different steps ({int(low.item())} to {int(high.item())}; this rank at {step}): "
                "every worker must see the same checkpoint directory (on Kubernetes: spec.checkpoint.volume, a volume all pods share)"
            )

    def _start_reporters(self) -> None:
        cfg, m, pod = self.cfg, self.cfg.metrics, self.pod
        if cfg.data.mixture and self.rank == 0:
            self.poller = MixturePoller(cfg.data.dmu_url, cfg.data.mixture, wait=cfg.data.poll_wait_seconds, token=cfg.data.dmu_token)
            self.poller.poll_once(wait=0)  # start on the published mixture when the DMU is up
            self.poller.start()
        if m.tsm_url:
            self.sender = TSMSender(
                m.tsm_url, cfg.job, self.rank, flush_interval=m.flush_interval_seconds, spool_dir=m.spool_dir, token=m.tsm_token
            )
        self.prom = PrometheusMetrics(cfg.job, self.rank, self.env.local_rank, port=m.prometheus_port, multiproc_dir=m.prometheus_dir)
        if self.rank == 0 and pod.pod_name and pod.namespace:
            self.progress = ProgressReporter(
                pod.pod_name, pod.namespace, interval_steps=m.progress_interval_steps, kubeconfig=pod.kubeconfig
            )

    def is_eval_step(self, step: int) -> bool:
        return step % self.cfg.metrics.eval_interval == 0 or step == self.last_step

    def train_step(self) -> StepPoint:
        """One optimizer step on this rank's rows of the global batch (collective); its metrics.

        Rank 0's point carries the global loss, per-source losses, grad norm, LR and MFU.
        """
        cfg, state = self.cfg, self.state
        state.step += 1
        step = state.step
        started = time.perf_counter()
        sync_mixture(self.sampler, self.poller, step, device=self.device)
        if self.skip and step == self.skip[0]:
            self.sampler.plan(self.skip[1] * self.global_batch)  # advances the stream past those steps' samples
            state.data_skips.append(self.skip[2])
            if self.rank == 0:
                log.warning("skipping data", extra={"at_step": step, "skipped_batches": self.skip[1], "request": self.skip[2]})
        batch = self.loader.next_batch(step)
        if self.sample_log:
            self.sample_log.write(batch)
        lr = lr_at(step, base=self.base_lr, warmup=cfg.optim.warmup_steps, total=cfg.steps, min_ratio=cfg.optim.min_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        sums = self._forward_backward(batch)
        grad_norm = par.clip_grad_norm(self.model, cfg.optim.grad_clip)
        if self.is_eval_step(step):
            self.weight_stats.before_update()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if dist.is_initialized():
            dist.all_reduce(sums)
        sums = sums.tolist()
        step_time = time.perf_counter() - started
        tokens = self.global_batch * self.seq_len
        state.tokens_seen += tokens
        n = len(self.sources.names)
        self.source_sums = {name: (sums[1 + s], sums[1 + n + s]) for s, name in enumerate(self.sources.names)}
        point = StepPoint(
            step=step,
            rank=self.rank,
            time=time.time(),
            tokens_seen=state.tokens_seen,
            mixture_version=batch.mixture_version,
            scalars={
                "step_time_seconds": step_time,
                "tokens_per_second": self.rows[self.rank] * self.seq_len / step_time,
                "batch_rows": self.rows[self.rank],
            },
        )
        if self.rank == 0:
            global_tps = tokens / step_time
            point.scalars.update(loss=sums[0] / tokens, grad_norm=grad_norm.item(), lr=lr, global_tokens_per_second=global_tps)
            if self.peak:
                point.scalars["mfu"] = self.flops_per_token * global_tps / (self.world * self.peak)
            point.source_losses = {name: loss / count for name, (loss, count) in self.source_sums.items() if count > 0}
        return point

    def _forward_backward(self, batch: Batch) -> torch.Tensor:
        """This rank's micro batches, gradients accumulated; [loss sum, per-source loss sums, per-source tokens]."""
        seq_len, n_sources = self.seq_len, len(self.sources.names)
        tokens = batch.tokens.to(self.device)
        source_index = batch.source_index.to(self.device)
        sums = torch.zeros(1 + 2 * n_sources, dtype=torch.float64, device=self.device)
        for i, (rows, weight) in enumerate(self.micro_batches):
            with par.gradient_sync(self.model, i == len(self.micro_batches) - 1):
                with self.autocast:
                    logits = self.model(tokens[rows, :-1])
                token_loss = F.cross_entropy(logits.float().flatten(0, 1), tokens[rows, 1:].flatten(), reduction="none")
                # Gradients are averaged over ranks: scale so the result is the global mean per token.
                (token_loss.sum() * (weight * self.world / (self.global_batch * seq_len))).backward()
            if not weight:
                continue  # a stand-in pass: its collectives only
            row_loss = token_loss.detach().view(-1, seq_len).sum(1).double()
            sums[0] += row_loss.sum()
            sums[1 : 1 + n_sources].index_add_(0, source_index[rows], row_loss)
            sums[1 + n_sources :].index_add_(0, source_index[rows], torch.full_like(row_loss, seq_len))
        return sums

    def evaluate(self, point: StepPoint) -> list[EvalResult]:
        """Weight statistics (into ``point``; collective under FSDP2), validation loss, downstream tasks."""
        cfg, m = self.cfg, self.cfg.metrics
        layer_stats = self.weight_stats.after_update()
        point.layer_stats = layer_stats if self.rank == 0 else []
        now, evals = time.time(), []
        if cfg.data.val_samples_per_source:
            val = validation_loss(
                self.model,
                self.sources,
                max_samples=m.eval_batches * cfg.micro_batch,
                micro_batch=cfg.micro_batch,
                device=self.device,
                autocast=self.autocast,
            )
            evals += [EvalResult(step=point.step, kind="val_loss", name=name, value=v, time=now) for name, v in val.items()]
        for task in self.tasks:
            evals.append(
                EvalResult(
                    step=point.step,
                    kind="downstream",
                    name=task.name,
                    time=now,
                    value=task.evaluate(self.model, device=self.device, autocast=self.autocast),
                )
            )
        return evals if self.rank == 0 else []

    def save_checkpoint(self) -> None:
        self.state.sampler = self.sampler.state_dict()
        saved = self.manager.save(self.state.step, self.model, self.optimizer, self.state)
        if self.progress:
            self.progress.checkpoint(self.state.step, str(saved))

    def train(self) -> None:
        """Step until ``last_step``: evaluate, report and checkpoint on their intervals."""
        cfg, state = self.cfg, self.state
        log.info(
            "training",
            extra={
                "job": cfg.job,
                "rank": self.rank,
                "pool": cfg.pool,
                "world_size": self.world,
                "global_batch": self.global_batch,
                "rows": self.rows[self.rank],
                "accumulation": len(self.micro_batches),
                "resumed_at": state.step,
                "device": str(self.device),
            },
        )
        if self.progress and self.resume_from:  # the step and checkpoint a restart resumed at, before the first new step
            self.progress.step(state.step, loss=None, mixture_version=self.sampler.version, tokens=state.tokens_seen)
            self.progress.checkpoint(state.step, str(self.resume_from))
        while state.step < self.last_step:
            point = self.train_step()
            evals = self.evaluate(point) if self.is_eval_step(point.step) else []
            report(point, evals, self.sender, self.prom, self.sampler.version)
            if self.progress:
                self.progress.step(
                    point.step,
                    loss=point.scalars["loss"],
                    mixture_version=self.sampler.version,
                    tokens=state.tokens_seen,
                    force=point.step == self.last_step,
                )
            if self.manager and (point.step % cfg.checkpoint.interval == 0 or point.step == self.last_step):
                self.save_checkpoint()
        if self.sender and self.rank == 0 and state.step >= cfg.steps:
            self.sender.complete(state.step)

    def close(self) -> None:
        """Stop the reporters (flushing what they hold); the process group outlives the Trainer."""
        for closing in (self.progress, self.sender, self.prom):
            if closing:
                closing.close()
        if self.poller:
            self.poller.stop()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def train(cfg: TrainConfig) -> None:
    with Trainer(cfg) as trainer:
        trainer.train()


def report(point: StepPoint, evals: list[EvalResult], sender: TSMSender | None, prom: PrometheusMetrics, version: int | None) -> None:
    if point.rank == 0:
        log_step(point)
        for result in evals:
            log.info("eval", extra={"step": result.step, "kind": result.kind, "eval": result.name, "value": result.value})
    if sender:
        sender.add_point(point)
        for result in evals:
            sender.add_eval(result)
        prom.set(prom.tsm_buffered, sender.buffered_batches)
    s = point.scalars
    prom.set(prom.step, point.step)
    prom.set(prom.step_time, s["step_time_seconds"])
    prom.set(prom.tokens_per_second, s["tokens_per_second"])
    prom.tokens.labels(**prom.labels).inc(s["tokens_per_second"] * s["step_time_seconds"])
    for gauge, key in ((prom.loss, "loss"), (prom.grad_norm, "grad_norm"), (prom.lr, "lr"), (prom.mfu, "mfu")):
        prom.set(gauge, s.get(key))
    prom.set(prom.mixture_version, version)
    for source, value in point.source_losses.items():
        prom.set(prom.source_loss, value, source=source)
    for result in evals:
        prom.set(
            prom.val_loss if result.kind == "val_loss" else prom.downstream,
            result.value,
            **({"source": result.name} if result.kind == "val_loss" else {"task": result.name}),
        )


def main(argv: list[str] | None = None) -> None:
    configure_logging()
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` dumps every thread's stack: diagnose a hung rank
    try:
        train(parse_args(argv))
    except (ConfigError, ModelConfigError, ShardFormatError, ckpt.CheckpointError) as e:
        log.error("cannot train: %s", e)
        raise SystemExit(f"error: {e}") from e
    finally:
        # After train() returned: the model (DDP reducer) and optimizer are gone before the group is.
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
