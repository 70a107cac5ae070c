"""One elastic training worker: ``torchrun --nnodes=MIN:MAX --rdzv-backend=c10d … -m heurimentor_trainer.train --config …``.

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

import torch
import torch.distributed as dist
import torch.nn.functional as F

from heurimentor.contracts.shards import ShardFormatError
from heurimentor.logs import configure_logging
from heurimentor_trainer import checkpoint as ckpt, parallelize as par
from heurimentor_trainer.config import ConfigError, DistEnv, PodEnv, TrainConfig, parse_args
from heurimentor_trainer.data import MixtureDataLoader, MixturePoller, MixtureSampler, SampleLog, SourceSet, batch_slices, sync_mixture
from heurimentor_trainer.evals import build_downstream, validation_loss
from heurimentor_trainer.metrics import PrometheusMetrics, TSMSender, WeightStats, log_step, peak_flops
from heurimentor_trainer.model import ModelConfigError, build_model
from heurimentor_trainer.presets import get_preset
from heurimentor_trainer.progress import ProgressReporter
from heurimentor.contracts.metrics import EvalResult, StepPoint

log = logging.getLogger("heurimentor_trainer.train")


def rows_per_rank(cfg: TrainConfig, global_batch: int, world_size: int) -> list[int]:
    """Sequences of the global batch each rank trains on; pools split it by their share."""
    pools = [(cfg.pool, cfg.pool_share)] * world_size
    if dist.is_initialized():
        dist.all_gather_object(pools, (cfg.pool, cfg.pool_share))
    shares: dict[str, float] = {}
    for pool, share in pools:
        if shares.setdefault(pool, share) != share:
            raise ConfigError(f"pool {pool!r}: ranks disagree on pool_share ({shares[pool]} vs {share})")
    if not math.isclose(sum(shares.values()), 1.0, abs_tol=1e-6):
        raise ConfigError(f"pool_share of pools {shares} sums to {sum(shares.values())}, must be 1")
    counts = [0] * world_size
    names = sorted(shares)
    remaining = global_batch
    for i, pool in enumerate(names):
        pool_rows = remaining if i == len(names) - 1 else round(global_batch * shares[pool])
        remaining -= pool_rows
        members = [r for r, (p, _) in enumerate(pools) if p == pool]
        for j, r in enumerate(members):
            counts[r] = pool_rows // len(members) + (j < pool_rows % len(members))
    for r, rows in enumerate(counts):
        if rows == 0 or rows % cfg.micro_batch:
            raise ConfigError(f"global_batch={global_batch} cannot be split into micro batches of micro_batch={cfg.micro_batch} "
                              f"over world_size={world_size} (rank {r} of pool {pools[r][0]!r} would get {rows} sequences); "
                              f"global_batch must be a multiple of world_size x micro_batch")
    return counts


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


def train(cfg: TrainConfig) -> None:
    env, pod = DistEnv.from_env(), PodEnv.from_env()
    device = par.pick_device(cfg.device, env)
    par.init_distributed(env, device)
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    ckpt.seed_everything(cfg.seed + rank)
    preset = get_preset(cfg.preset, **cfg.model)
    args = preset.model
    seq_len = cfg.seq_len or args.max_seq_len
    if seq_len > args.max_seq_len:
        raise ConfigError(f"seq_len={seq_len} exceeds the model's max_seq_len={args.max_seq_len}")
    global_batch = cfg.global_batch or preset.global_batch_size
    counts = rows_per_rank(cfg, global_batch, world)
    accumulation = counts[rank] // cfg.micro_batch
    sources = SourceSet(cfg.data.shard_root, seq_len, names=cfg.data.sources, vocab_size=args.vocab_size,
                        val_samples_per_source=cfg.data.val_samples_per_source)
    manager = ckpt.CheckpointManager(cfg.checkpoint.dir, keep=cfg.checkpoint.keep) if cfg.checkpoint.dir else None
    if pod.rollback_to_step is not None:
        if not manager:
            raise ConfigError(f"HEURIMENTOR_ROLLBACK_TO_STEP={pod.rollback_to_step} needs checkpoint.dir")
        if rank == 0:  # one request per attempt: the operator sets the env on every pod of the rollback's attempt
            manager.rollback(pod.rollback_to_step, request=f"attempt {pod.attempt or '-'}: step {pod.rollback_to_step}")
        if dist.is_initialized():
            dist.barrier()  # no rank reads "latest" before the rollback moved it
    resume_from = manager.latest() if manager and cfg.checkpoint.resume else None
    state = manager.read_state(resume_from, args) if resume_from else None  # shape checked before any work
    if state and state.get("seq_len") != seq_len:
        log.warning("seq_len changed since the checkpoint: samples are cut on a new grid, so the data stream "
                    "does not continue exactly", extra={"checkpoint_seq_len": state.get("seq_len"), "seq_len": seq_len})
    try:
        tasks = [build_downstream(spec) for spec in cfg.metrics.downstream]
    except (ValueError, OSError) as e:
        raise ConfigError(f"metrics.downstream: {e}") from e

    model = par.parallelize(build_model(args, device=device, seed=cfg.seed), device,
                            activation_checkpointing=cfg.activation_checkpointing, compile=cfg.compile)
    base_lr = cfg.optim.lr or preset.lr
    optimizer = build_optimizer(model, cfg, base_lr)
    weights = cfg.data.static_weights or {name: 1.0 for name in sources.names}
    sampler = MixtureSampler(sources.names, sources.train_sizes, seed=cfg.seed, weights=weights)
    step, tokens_seen = 0, 0
    if state:
        manager.load(resume_from, model, optimizer, seed=cfg.seed)
        sampler.load_state_dict(state["sampler"])
        step, tokens_seen = state["step"], state["tokens_seen"]
    data_skips = list(state.get("data_skips", [])) if state else []  # applied ones travel with the sampler state
    skip = pending_data_skip(pod, step, data_skips)
    poller = None
    if cfg.data.mixture and rank == 0:
        poller = MixturePoller(cfg.data.dmu_url, cfg.data.mixture, wait=cfg.data.poll_wait_seconds, token=cfg.data.dmu_token)
        poller.poll_once(wait=0)  # start on the published mixture when the DMU is up
        poller.start()
    loader = MixtureDataLoader(sources, sampler, global_batch=global_batch, rank_slice=batch_slices(counts)[rank])
    sample_log = SampleLog(cfg.data.sample_log_dir, rank) if cfg.data.sample_log_dir else None
    m = cfg.metrics
    sender = (TSMSender(m.tsm_url, cfg.job, rank, flush_interval=m.flush_interval_seconds, spool_dir=m.spool_dir, token=m.tsm_token)
              if m.tsm_url else None)
    prom = PrometheusMetrics(cfg.job, rank, env.local_rank, port=m.prometheus_port, multiproc_dir=m.prometheus_dir)
    progress = None
    if rank == 0 and pod.pod_name and pod.namespace:
        progress = ProgressReporter(pod.pod_name, pod.namespace, interval_steps=m.progress_interval_steps, kubeconfig=pod.kubeconfig)
        if resume_from:  # the step and checkpoint a restart resumed at, before the first new step
            progress.step(step, loss=None, mixture_version=sampler.version, tokens=tokens_seen)
            progress.checkpoint(step, str(resume_from))
    weight_stats = WeightStats(model)
    peak = peak_flops(device, m.peak_tflops_per_device)
    flops_per_token = args.flops_per_token(seq_len)
    n_sources = len(sources.names)
    log.info("training", extra={"job": cfg.job, "rank": rank, "world_size": world, "global_batch": global_batch,
                                "rows": counts[rank], "accumulation": accumulation, "resumed_at": step, "device": str(device)})
    autocast = par.autocast(device)
    try:
        last_step = min(cfg.steps, cfg.stop_at_step or cfg.steps)
        while step < last_step:
            step += 1
            started = time.perf_counter()
            sync_mixture(sampler, poller, step, device=device)
            if skip and step == skip[0]:
                sampler.plan(skip[1] * global_batch)  # advances the stream past those steps' samples
                data_skips.append(skip[2])
                if rank == 0:
                    log.warning("skipping data", extra={"at_step": step, "skipped_batches": skip[1], "request": skip[2]})
            batch = loader.next_batch(step)
            if sample_log:
                sample_log.write(batch)
            lr = lr_at(step, base=base_lr, warmup=cfg.optim.warmup_steps, total=cfg.steps, min_ratio=cfg.optim.min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = lr
            tokens = batch.tokens.to(device)
            source_index = batch.source_index.to(device)
            # [loss sum, per-source loss sums, per-source token counts], summed over ranks below
            sums = torch.zeros(1 + 2 * n_sources, dtype=torch.float64, device=device)
            for micro in range(accumulation):
                rows = slice(micro * cfg.micro_batch, (micro + 1) * cfg.micro_batch)
                with par.gradient_sync(model, micro == accumulation - 1):
                    with autocast:
                        logits = model(tokens[rows, :-1])
                    token_loss = F.cross_entropy(logits.float().flatten(0, 1), tokens[rows, 1:].flatten(), reduction="none")
                    # Gradients are averaged over ranks: scale so the result is the global mean per token.
                    (token_loss.sum() * world / (global_batch * seq_len)).backward()
                row_loss = token_loss.detach().view(-1, seq_len).sum(1).double()
                sums[0] += row_loss.sum()
                sums[1 : 1 + n_sources].index_add_(0, source_index[rows], row_loss)
                sums[1 + n_sources :].index_add_(0, source_index[rows], torch.full_like(row_loss, seq_len))
            grad_norm = par.clip_grad_norm(model, cfg.optim.grad_clip)
            interval = step % m.eval_interval == 0 or step == last_step
            if interval:
                weight_stats.before_update()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if dist.is_initialized():
                dist.all_reduce(sums)
            sums = sums.tolist()
            step_time = time.perf_counter() - started
            tokens_seen += global_batch * seq_len
            point = StepPoint(step=step, rank=rank, time=time.time(), tokens_seen=tokens_seen, mixture_version=batch.mixture_version,
                              scalars={"step_time_seconds": step_time, "tokens_per_second": counts[rank] * seq_len / step_time})
            if rank == 0:
                global_tps = global_batch * seq_len / step_time
                point.scalars.update(loss=sums[0] / (global_batch * seq_len), grad_norm=grad_norm.item(), lr=lr,
                                     global_tokens_per_second=global_tps)
                if peak:
                    point.scalars["mfu"] = flops_per_token * global_tps / (world * peak)
                point.source_losses = {name: sums[1 + s] / sums[1 + n_sources + s]
                                       for s, name in enumerate(sources.names) if sums[1 + n_sources + s] > 0}
            evals: list[EvalResult] = []
            if interval:
                layer_stats = weight_stats.after_update()  # collective under FSDP2
                point.layer_stats = layer_stats if rank == 0 else []
                now = time.time()
                if cfg.data.val_samples_per_source:
                    val = validation_loss(model, sources, max_samples=m.eval_batches * cfg.micro_batch,
                                          micro_batch=cfg.micro_batch, device=device, autocast=autocast)
                    evals += [EvalResult(step=step, kind="val_loss", name=name, value=v, time=now) for name, v in val.items()]
                for task in tasks:
                    evals.append(EvalResult(step=step, kind="downstream", name=task.name, time=now,
                                            value=task.evaluate(model, device=device, autocast=autocast)))
            report(point, evals if rank == 0 else [], sender, prom, sampler.version)
            if progress:
                progress.step(step, loss=point.scalars["loss"], mixture_version=sampler.version, tokens=tokens_seen,
                              force=step == last_step)
            if manager and (step % cfg.checkpoint.interval == 0 or step == last_step):
                saved = manager.save(step, model, optimizer, {
                    "step": step, "tokens_seen": tokens_seen, "sampler": sampler.state_dict(), "data_skips": data_skips, "world_size": world,
                    "model_args": vars(args), "global_batch": global_batch, "seq_len": seq_len,
                    "lr_schedule": {"base": base_lr, "warmup": cfg.optim.warmup_steps, "total": cfg.steps, "min_ratio": cfg.optim.min_lr_ratio},
                })
                if progress:
                    progress.checkpoint(step, str(saved))
        if sender and rank == 0 and step >= cfg.steps:
            sender.complete(step)
    finally:
        if progress:
            progress.close()
        if poller:
            poller.stop()
        if sender:
            sender.close()
        prom.close()


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
        prom.set(prom.val_loss if result.kind == "val_loss" else prom.downstream, result.value,
                 **({"source": result.name} if result.kind == "val_loss" else {"task": result.name}))


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
