"""The reconcile decision, pure: (job, its pods, now) -> what to create, delete, record and announce.

Level-based and idempotent: the plan depends only on what the apiserver holds, so an operator
killed at any point and restarted computes the same plan again. Pods have deterministic names
(<job>-<pool>-<index>) and carry the job's restart attempt; pods of an older attempt are stale.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from heurimentor.contracts.batch import split_global_batch
from heurimentor.contracts.progress import ANNOTATION_PROGRESS, parse_progress
from heurimentor.contracts.worker_env import parse_step, parse_step_range
from heurimentor_operator.builders import assign_pools, pod_name, selector_for
from heurimentor_operator.conditions import get_condition, is_true, parse_time, rfc3339, set_condition
from heurimentor_operator.constants import (
    ANNOTATION_ROLLBACK,
    ANNOTATION_ROLLBACK_ID,
    ANNOTATION_ROLLBACK_SKIP,
    ANNOTATION_TEMPLATE_HASH,
    FINISHED_PHASES,
    LABEL_ATTEMPT,
    LABEL_INDEX,
    LABEL_POOL,
    WORKER_CONTAINER,
)
from heurimentor_operator.spec import JobSpec

log = logging.getLogger(__name__)

MAX_RESTART_BACKOFF_S = 600
HANDLED_FAILURES_KEPT = 64


@dataclass(frozen=True)
class PodView:
    name: str
    uid: str
    pool: str
    index: int
    attempt: int
    template_hash: str | None
    phase: str
    scheduled: bool
    terminating: bool
    created: datetime | None
    exit_code: int | None
    progress: dict[str, Any] | None


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str
    # Set on the Events of a recorded decision (restart, rollback, end, blocked): kept in
    # status.lastEvents and posted under a name made from it, so a repeat after a crash is a 409.
    key: str | None = None


@dataclass
class Plan:
    status: dict[str, Any]
    create: list[tuple[str, int]] = field(default_factory=list)
    delete: list[tuple[str, str, str]] = field(default_factory=list)  # (pod name, uid, why)
    events: list[Event] = field(default_factory=list)
    pool_replicas: dict[str, int] = field(default_factory=dict)  # replicas each pool runs (capped by capacity)
    attempt: int = 0
    rollback_step: int | None = None  # this attempt restarts from that checkpoint step
    rollback_skip: tuple[int, int] | None = None  # ... and skips the data of these steps (inclusive)
    requeue_after: float | None = None
    delete_job: bool = False
    counters: list[str] = field(default_factory=list)  # metrics to bump: restarted/succeeded/failed

    def requeue(self, seconds: float) -> None:
        seconds = max(seconds, 0.05)
        self.requeue_after = seconds if self.requeue_after is None else min(self.requeue_after, seconds)


def view_pod(pod: dict[str, Any]) -> PodView | None:
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    try:
        index = int(labels[LABEL_INDEX])
        attempt = int(labels[LABEL_ATTEMPT])
        pool = labels[LABEL_POOL]
    except (KeyError, ValueError):
        return None  # not a worker pod of ours (a person's pod with a copied label)
    status = pod.get("status") or {}
    spec = pod.get("spec") or {}
    scheduled = bool(spec.get("nodeName")) or any(
        c.get("type") == "PodScheduled" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    exit_code = None
    for cs in status.get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated")
        if term and (cs.get("name") == WORKER_CONTAINER or exit_code is None):
            exit_code = term.get("exitCode")
    progress = None
    raw = (meta.get("annotations") or {}).get(ANNOTATION_PROGRESS)
    if raw:
        try:
            progress = parse_progress(raw)
        except ValueError as e:
            log.warning("pod %s has an unreadable progress annotation: %s", meta.get("name"), e)
    return PodView(
        name=meta["name"],
        uid=meta.get("uid", ""),
        pool=pool,
        index=index,
        attempt=attempt,
        template_hash=(meta.get("annotations") or {}).get(ANNOTATION_TEMPLATE_HASH),
        phase=status.get("phase") or "Pending",
        scheduled=scheduled,
        terminating=bool(meta.get("deletionTimestamp")),
        created=parse_time(meta.get("creationTimestamp")),
        exit_code=exit_code,
        progress=progress,
    )


def restart_backoff(spec: JobSpec, restarts: int) -> int:
    """Seconds before restart number ``restarts`` (1-based): base, 2*base, 4*base … capped."""
    return min(spec.run_policy.restart_backoff_s * 2 ** max(restarts - 1, 0), MAX_RESTART_BACKOFF_S)


class _Planner:
    def __init__(self, body: dict[str, Any], spec: JobSpec, pods: list[dict[str, Any]], now: datetime):
        self.body, self.spec, self.now = body, spec, now
        self.status = copy.deepcopy(body.get("status") or {})
        self.conds: list[dict[str, Any]] = self.status.setdefault("conditions", [])
        views = [v for v in (view_pod(p) for p in pods) if v is not None]
        self.live = [v for v in views if not v.terminating]
        self.terminating_names = {v.name for v in views if v.terminating}
        self.plan = Plan(status=self.status)
        self.attempt = int(self.status.get("attempt", 0))
        self.restarts = int(self.status.get("restarts", 0))

    # -- helpers -----------------------------------------------------------------------------
    def event(self, type_: str, reason: str, message: str, *, key: str | None = None) -> None:
        self.plan.events.append(Event(type_, reason, message, key))

    def cond(self, type_: str, status: bool, reason: str, message: str) -> bool:
        return set_condition(self.conds, type_, status, reason, message, now=self.now, generation=self.spec.generation)

    def delete(self, v: PodView, why: str) -> None:
        if all(name != v.name for name, _, _ in self.plan.delete):
            self.plan.delete.append((v.name, v.uid, why))

    def finish(self, phase: str, reason: str, message: str) -> None:
        self.status["phase"] = phase
        self.status["completionTime"] = rfc3339(self.now)
        self.status.pop("restartAfter", None)
        self.cond(phase, True, reason, message)
        self.cond("Running", False, reason, message)
        self.cond("Scaling", False, reason, "job finished")
        if is_true(self.conds, "Restarting"):
            self.cond("Restarting", False, reason, "job finished")
        self.event("Normal" if phase == "Succeeded" else "Warning", reason, message, key=phase.lower())
        self.plan.counters.append(phase.lower())
        self.clean_pods()
        self.requeue_ttl()

    def clean_pods(self) -> None:
        policy = self.spec.run_policy.clean_pod_policy
        for v in self.live:
            if policy == "All" or (policy == "Running" and v.phase in ("Pending", "Running")):
                self.delete(v, f"job {self.status['phase']} (cleanPodPolicy {policy})")
        # A finished job's replicas are the workers cleanPodPolicy leaves running, not the last count.
        deleting = {name for name, _, _ in self.plan.delete}
        running = sum(v.phase == "Running" and v.name not in deleting for v in self.live)
        self.status.update(replicas=running, worldSize=running * self.spec.nproc_per_node)

    def requeue_ttl(self) -> None:
        ttl = self.spec.run_policy.ttl_after_finished_s
        done = parse_time(self.status.get("completionTime"))
        if ttl is None or done is None:
            return
        left = (done + timedelta(seconds=ttl) - self.now).total_seconds()
        if left <= 0:
            self.plan.delete_job = True
            self.event("Normal", "TTLExpired", f"deleting the job {ttl}s after it finished (ttlSecondsAfterFinished)")
        else:
            self.plan.requeue(left)

    # -- the decision --------------------------------------------------------------------------
    def run(self) -> Plan:
        spec, st = self.spec, self.status
        st["observedGeneration"] = spec.generation
        st["selector"] = selector_for(spec)
        if st.get("phase") in FINISHED_PHASES:
            self.clean_pods()
            self.requeue_ttl()
            return self.done()
        if not get_condition(self.conds, "Created"):
            self.cond("Created", True, "JobCreated", f"config, headless service and worker pods created for {spec.ref}")
            self.event(
                "Normal", "Created", f"reconciling {spec.ref}: {spec.elastic.target} workers x {spec.nproc_per_node} ranks", key="created"
            )
            self.plan.counters.append("created")
            st.setdefault("phase", "Pending")
        if self.deadline_exceeded() or self.suspended() or self.blocked():
            return self.done()
        self.apply_rollback()
        self.apply_template_change()
        cur = [v for v in self.live if v.attempt == self.attempt]
        for v in self.live:
            if v.attempt != self.attempt:
                self.delete(v, f"left from attempt {v.attempt} (now {self.attempt})")
        cur = self.handle_failures(cur)
        if st.get("phase") in FINISHED_PHASES:
            return self.done()
        if cur and all(v.phase == "Succeeded" for v in cur) and not self.plan.delete:
            self.finish("Succeeded", "JobSucceeded", f"all {len(cur)} workers of {spec.ref} exited 0")
            return self.done()
        self.place(cur)
        return self.done()

    def done(self) -> Plan:
        self.plan.attempt = self.attempt
        self.status["attempt"] = self.attempt
        self.status["restarts"] = self.restarts
        keyed = [{"key": e.key, "type": e.type, "reason": e.reason, "message": e.message} for e in self.plan.events if e.key]
        if keyed:  # written with the decision; a restarted operator posts what it finds here again
            self.status["lastEvents"] = keyed
        rollback = self.status.get("rollback") or {}
        if rollback.get("attempt") == self.attempt and "step" in rollback:
            self.plan.rollback_step = int(rollback["step"])
            if rollback.get("skipSteps"):
                self.plan.rollback_skip = tuple(rollback["skipSteps"])
        return self.plan

    def deadline_exceeded(self) -> bool:
        limit = self.spec.run_policy.active_deadline_s
        started = parse_time(self.status.get("startTime"))
        if limit is None or started is None:
            return False
        left = (started + timedelta(seconds=limit) - self.now).total_seconds()
        if left > 0:
            self.plan.requeue(left)
            return False
        self.finish("Failed", "DeadlineExceeded", f"{self.spec.ref} ran longer than activeDeadlineSeconds={limit}")
        return True

    def suspended(self) -> bool:
        st = self.status
        if self.spec.run_policy.suspend:
            for v in self.live:
                self.delete(v, "job suspended")
            if self.cond("Suspended", True, "JobSuspended", "workers deleted; checkpoints kept"):
                self.event("Normal", "Suspended", f"suspending {self.spec.ref}: deleting {len(self.live)} worker pods, checkpoints kept")
            self.cond("Running", False, "JobSuspended", "job is suspended")
            self.cond("Scaling", False, "JobSuspended", "job is suspended")
            st.update(phase="Suspended", replicas=0, worldSize=0)
            # Like a batch/v1 Job: the active deadline counts from the last resume.
            st.pop("startTime", None)
            st.pop("restartAfter", None)
            return True
        if is_true(self.conds, "Suspended"):
            self.cond("Suspended", False, "JobResumed", "workers recreated; training resumes from the last checkpoint")
            self.event("Normal", "Resumed", f"resuming {self.spec.ref} from its last checkpoint")
            st["phase"] = "Pending"
        return False

    def blocked(self) -> bool:
        """A spec that can never run waits, its workers removed, until the spec changes: pods the
        apiserver refused (InvalidPodTemplate, set by the handler from the apiserver's answer) or a
        global batch whose rank shares are not whole micro batches (InvalidBatchSplit)."""
        spec, st = self.spec, self.status
        cond = get_condition(self.conds, "Blocked")
        if cond and cond.get("status") == "True" and cond.get("observedGeneration") != spec.generation:
            self.cond("Blocked", False, "SpecChanged", f"generation {spec.generation} changed the spec; trying it")
            st["phase"] = "Pending"
        problem = batch_split_problem(spec)
        if problem and self.cond("Blocked", True, "InvalidBatchSplit", problem):
            self.event("Warning", "InvalidBatchSplit", f"{spec.ref}: {problem}", key=f"blocked-{spec.generation}")
        cond = get_condition(self.conds, "Blocked")
        if not (cond and cond.get("status") == "True"):
            return False
        for v in self.live:
            self.delete(v, f"job blocked ({cond.get('reason')})")
        self.cond("Running", False, cond.get("reason", "Blocked"), "the spec cannot run; change it")
        self.cond("Scaling", False, cond.get("reason", "Blocked"), "the spec cannot run; change it")
        st.update(phase="Blocked", replicas=0, worldSize=0)
        st.pop("restartAfter", None)
        return True

    def apply_rollback(self) -> None:
        """A new rollback request (annotations) starts a new attempt from that step's checkpoint.

        ``status.rollback`` keeps the last applied rollback (step, attempt: pods recreated in that
        attempt get it too) and the last request seen (requested*, and error if it was refused).
        """
        annotations = (self.body.get("metadata") or {}).get("annotations") or {}
        asked = {
            "requested": annotations.get(ANNOTATION_ROLLBACK),
            "requestedSkip": annotations.get(ANNOTATION_ROLLBACK_SKIP),
            "requestId": annotations.get(ANNOTATION_ROLLBACK_ID),
        }
        rollback = self.status.get("rollback") or {}
        requested, skip_raw, request_id = asked.values()
        if requested is None or all(rollback.get(k) == v for k, v in asked.items()):
            return
        asked = {k: v for k, v in asked.items() if v is not None}
        applied = {k: rollback[k] for k in ("step", "attempt", "time", "skipSteps") if k in rollback}
        try:
            step = parse_step(requested)
        except ValueError:
            self.status["rollback"] = {**applied, **asked, "error": f"{ANNOTATION_ROLLBACK} is not a non-negative step number"}
            self.event("Warning", "InvalidRollback", f"ignoring {ANNOTATION_ROLLBACK}={requested!r} on {self.spec.ref}: not a step number")
            return
        skip = None
        if skip_raw is not None:
            try:
                skip = list(parse_step_range(skip_raw))
            except ValueError:
                self.status["rollback"] = {**applied, **asked, "error": f"{ANNOTATION_ROLLBACK_SKIP} is not FROM-TO"}
                self.event(
                    "Warning",
                    "InvalidRollback",
                    f"ignoring the rollback of {self.spec.ref}: {ANNOTATION_ROLLBACK_SKIP}={skip_raw!r} is not FROM-TO (steps, FROM <= TO)",
                )
                return
        self.attempt += 1
        self.status["rollback"] = {**asked, "step": step, "attempt": self.attempt, "time": rfc3339(self.now)}
        if skip:
            self.status["rollback"]["skipSteps"] = skip
        self.plan.counters.append("rolled_back")
        by = f", requested by {request_id}" if request_id else ""
        self.cond("Restarting", True, "Rollback", f"restarting every worker from the checkpoint at step {step}{by}")
        self.event(
            "Warning",
            "Rollback",
            f"restarting {self.spec.ref} from the checkpoint at step {step} ({ANNOTATION_ROLLBACK}{by})",
            key=f"rollback-{self.attempt}",
        )

    def apply_template_change(self) -> None:
        want = self.spec.template_hash()
        changed = [v for v in self.live if v.attempt == self.attempt and v.template_hash != want and v.phase != "Succeeded"]
        if changed:
            self.attempt += 1
            self.cond("Restarting", True, "SpecChanged", f"pod template changed (generation {self.spec.generation})")
            self.event(
                "Normal",
                "SpecChanged",
                f"spec of {self.spec.ref} changed the workers' template; restarting them",
                key=f"spec-changed-{self.attempt}",
            )

    def handle_failures(self, cur: list[PodView]) -> list[PodView]:
        spec, st = self.spec, self.status
        handled = list(st.get("handledFailures") or [])
        failed = [v for v in cur if v.phase == "Failed"]
        new = [v for v in failed if v.uid not in handled]
        if new:
            what = ", ".join(f"{v.name} exited {v.exit_code if v.exit_code is not None else '?'}" for v in new)
            limit = spec.run_policy.backoff_limit
            if self.restarts >= limit:
                self.finish("Failed", "BackoffLimitExceeded", f"{what}; {self.restarts} restarts already made (backoffLimit {limit})")
                return []
            gang = spec.run_policy.restart_mode == "gang"
            self.restarts += 1 if gang else len(new)
            delay = restart_backoff(spec, self.restarts)
            st["restartAfter"] = rfc3339(self.now + timedelta(seconds=delay))
            self.plan.counters.append("restarted")
            mode = "all workers (gang)" if gang else "the failed pods (elastic)"
            self.cond("Restarting", True, "WorkerFailed", f"{what}; restart {self.restarts}/{limit} of {mode}")
            self.event(
                "Warning",
                "Restarting",
                f"{what}; restarting {mode} in {delay}s (restart {self.restarts} of backoffLimit {limit})",
                key=f"restart-{self.restarts}",
            )
            if gang:
                self.attempt += 1
                for v in cur:
                    self.delete(v, f"gang restart after {what}")
                return []
            handled.extend(v.uid for v in new)
            st["handledFailures"] = handled[-HANDLED_FAILURES_KEPT:]
        for v in failed:
            self.delete(v, "failed; replaced")
        return [v for v in cur if v.phase != "Failed"]

    def place(self, cur: list[PodView]) -> None:
        spec, st, now = self.spec, self.status, self.now
        restart_after = parse_time(st.get("restartAfter"))
        blocked = restart_after is not None and now < restart_after
        if blocked:
            self.plan.requeue((restart_after - now).total_seconds())
        else:
            st.pop("restartAfter", None)
        finishing = any(v.phase == "Succeeded" for v in cur)
        target = spec.elastic.target
        assigned = assign_pools(spec, target)
        old_caps = {p.get("name"): p.get("capacity") for p in st.get("pools") or []}
        timeout = spec.elastic.pending_timeout_s
        pools_status, caps, by_pool = [], {}, {}
        for pool in spec.pools:
            pods = [v for v in cur if v.pool == pool.name]
            by_pool[pool.name] = pods
            n = assigned[pool.name]
            sched = [v for v in pods if v.index < n and (v.scheduled or v.phase != "Pending")]
            cap = old_caps.get(pool.name)
            if cap is not None:
                cap = max(cap, len(sched))
                if cap >= n:
                    cap = None
                    self.event("Normal", "CapacityRecovered", f"pool {pool.name} of {spec.ref} grew back to {n} workers")
            stuck = [
                v
                for v in pods
                if v.index < n and not v.scheduled and v.phase == "Pending" and v.created and (now - v.created).total_seconds() >= timeout
            ]
            waiting = [
                v
                for v in pods
                if v.index < n and not v.scheduled and v.phase == "Pending" and v.created and (now - v.created).total_seconds() < timeout
            ]
            if waiting and not finishing:
                self.plan.requeue(min(timeout - (now - v.created).total_seconds() for v in waiting) + 0.1)
            if stuck and len(sched) < n and (cap is None or len(sched) < cap):
                cap = len(sched)
                self.event(
                    "Warning",
                    "InsufficientCapacity",
                    f"pool {pool.name}: {len(stuck)} pods Pending over {timeout}s; shrinking it from {n} to {cap} "
                    f"workers and keeping one Pending to grow back when capacity appears",
                )
            caps[pool.name] = cap
        self.keep_minimum(assigned, caps)
        desired: dict[str, set[int]] = {}
        for pool in spec.pools:
            n, cap, pods = assigned[pool.name], caps[pool.name], by_pool[pool.name]
            if cap is None:
                desired[pool.name] = set(range(n))
            else:
                keep = {v.index for v in pods if v.index < n and (v.scheduled or v.phase != "Pending")}
                fill = sorted(set(range(n)) - keep)
                desired[pool.name] = keep | set(fill[: cap + 1 - len(keep)])
        created, removed = [], []
        existing = {(v.pool, v.index): v for v in cur}
        for v in cur:
            if v.index not in desired.get(v.pool, set()) and not finishing:
                self.delete(v, "scaled down" if v.index >= assigned.get(v.pool, 0) else "Pending with no capacity")
                removed.append(v.name)
        if not blocked and not finishing:
            for pool in spec.pools:
                for index in sorted(desired[pool.name]):
                    if (pool.name, index) in existing:
                        continue
                    if pod_name(spec, pool.name, index) in self.terminating_names | {n for n, _, _ in self.plan.delete}:
                        self.plan.requeue(1.0)  # the old pod still holds the name
                        continue
                    self.plan.create.append((pool.name, index))
                    created.append(pod_name(spec, pool.name, index))
        effective = {p: (assigned[p] if caps[p] is None else min(assigned[p], caps[p])) for p in assigned}
        self.plan.pool_replicas = effective
        shares = split_global_batch(
            spec.global_batch_size, [(p.name, effective[p.name], p.relative_throughput) for p in spec.pools], spec.nproc_per_node
        )
        running = [v for v in cur if v.phase == "Running" and v.name not in removed]
        for pool in spec.pools:
            pods = [v for v in by_pool[pool.name] if v.name not in removed]
            entry = {
                "name": pool.name,
                "assigned": assigned[pool.name],
                "desired": len(desired[pool.name]),
                "running": sum(v.phase == "Running" for v in pods),
                "pending": sum(v.phase == "Pending" for v in pods),
                "batchShare": shares[pool.name],
            }
            if caps[pool.name] is not None:
                entry["capacity"] = caps[pool.name]
            pools_status.append(entry)
        st["pools"] = pools_status
        st["replicas"] = len(running)
        st["targetReplicas"] = sum(effective.values())
        st["worldSize"] = len(running) * spec.nproc_per_node
        self.record_decisions(created, removed, target)
        self.set_phase(running, blocked, finishing, target)
        self.record_progress(cur)

    def keep_minimum(self, assigned: dict[str, int], caps: dict[str, int | None]) -> None:
        """Never shrink below minReplicas: lift caps (pods stay Pending) until the minimum is wanted."""
        minimum = self.spec.elastic.min_replicas
        total = sum(assigned[p] if c is None else min(assigned[p], c) for p, c in caps.items())
        for pool in self.spec.pools:
            cap = caps[pool.name]
            if total >= minimum:
                break
            if cap is None:
                continue
            lift = min(minimum - total, assigned[pool.name] - cap)
            caps[pool.name] = None if cap + lift >= assigned[pool.name] else cap + lift
            total += lift

    def record_decisions(self, created: list[str], removed: list[str], target: int) -> None:
        first = next((e for e in self.plan.events if e.reason == "Created"), None)
        if created and first is not None:
            # One Event for a new job and its first pods (Events are API writes too).
            self.plan.events[self.plan.events.index(first)] = Event(
                first.type, first.reason, f"{first.message}; creating {', '.join(created)}", first.key
            )
            created = []
        if created:
            self.event("Normal", "CreatedPods", f"creating {len(created)} worker pods toward {target}: {', '.join(created)}")
        if removed:
            self.event("Normal", "DeletedPods", f"removing {len(removed)} worker pods: {', '.join(removed)}")

    def set_phase(self, running: list[PodView], blocked: bool, finishing: bool, target: int) -> None:
        st, spec = self.status, self.spec
        effective = st["targetReplicas"]
        if blocked:
            st["phase"] = "Restarting"
        elif len(running) >= spec.elastic.min_replicas:
            st["phase"] = "Running"
            st.setdefault("startTime", rfc3339(self.now))
            if is_true(self.conds, "Restarting") and len(running) >= effective:
                self.cond("Restarting", False, "Restarted", f"{len(running)} workers running again")
        else:
            st["phase"] = "Pending"
        msg = f"{len(running)}/{effective} workers running, world size {st['worldSize']}"
        if len(running) >= spec.elastic.min_replicas:
            if self.cond("Running", True, "WorkersRunning", msg):
                self.event("Normal", "Running", f"{spec.ref}: {msg}")
        else:
            self.cond("Running", False, "WaitingForWorkers", f"{msg}; need at least {spec.elastic.min_replicas}")
        if finishing:
            self.cond("Scaling", False, "Finishing", "workers are exiting after training finished")
        elif effective < target:
            self.cond("Scaling", True, "InsufficientCapacity", f"shrunk to {effective} of {target} workers: pods Pending past the timeout")
        elif len(running) != effective:
            reason = "ScalingUp" if len(running) < effective else "ScalingDown"
            self.cond("Scaling", True, reason, f"{len(running)} running, moving to {effective}")
        else:
            self.cond("Scaling", False, "Stable", msg)

    def record_progress(self, cur: list[PodView]) -> None:
        st, spec = self.status, self.spec
        reports = [v.progress for v in cur if v.progress and isinstance(v.progress.get("step"), int)]
        if not reports:
            return
        latest = max(reports, key=lambda r: r["step"])
        step = latest["step"]
        st["step"] = step
        for key in ("loss", "mixtureVersion", "tokens"):
            if latest.get(key) is not None:
                st[key] = latest[key]
        if isinstance(latest.get("checkpoint"), dict):
            st["lastCheckpoint"] = {k: latest["checkpoint"][k] for k in ("step", "path") if k in latest["checkpoint"]}
        total = spec.hyperparameters.get("steps")
        if not total:
            return
        st["progress"] = f"{100.0 * min(step, total) / total:.1f}%"
        base = st.get("rateBase") or {}
        if not base or step < base.get("step", 0):
            st["rateBase"] = {"step": step, "time": rfc3339(self.now)}
            return
        elapsed = (self.now - parse_time(base["time"])).total_seconds()
        done = step - base["step"]
        if done > 0 and elapsed > 0:
            remaining = max(total - step, 0) * elapsed / done
            st["eta"] = rfc3339(self.now + timedelta(seconds=remaining))


def batch_split_problem(spec: JobSpec) -> str | None:
    """Why the global batch cannot be cut into whole micro batches on every rank at the job's
    target size, or None. The CRD refuses this for one pool; over several, the throughput split
    decides (a pool's share is spread over its ranks as evenly as it divides)."""
    micro = int(spec.hyperparameters.get("microBatchSize", 1))
    if micro == 1:
        return None
    assigned = assign_pools(spec, spec.elastic.target)
    shares = split_global_batch(
        spec.global_batch_size, [(p.name, assigned[p.name], p.relative_throughput) for p in spec.pools], spec.nproc_per_node
    )
    for pool in spec.pools:
        ranks = assigned[pool.name] * spec.nproc_per_node
        if ranks and (shares[pool.name] % ranks or (shares[pool.name] // ranks) % micro):
            return (
                f"hyperparameters.microBatchSize {micro} does not divide the share of a rank of pool {pool.name}: "
                f"{shares[pool.name]} of hyperparameters.globalBatchSize {spec.global_batch_size} sequences over {ranks} ranks; "
                f"change globalBatchSize, microBatchSize or the pools' relativeThroughput"
            )
    return None


def block(status: dict[str, Any], spec: JobSpec, reason: str, message: str, now: datetime) -> tuple[dict[str, Any], Event | None]:
    """``status`` with the job Blocked for ``reason`` at this generation, and the Event to post
    (None when it was already blocked for that reason: the Event goes out once)."""
    status = copy.deepcopy(status)
    conds = status.setdefault("conditions", [])
    prior = get_condition(conds, "Blocked") or {}
    again = prior.get("status") == "True" and prior.get("reason") == reason and prior.get("message") == message
    set_condition(conds, "Blocked", True, reason, message, now=now, generation=spec.generation)
    status["phase"] = "Blocked"
    if again:
        return status, None
    event = Event("Warning", reason, f"{spec.ref}: {message}; nothing is retried until the spec changes", key=f"blocked-{spec.generation}")
    status["lastEvents"] = [{"key": event.key, "type": event.type, "reason": event.reason, "message": event.message}]
    return status, event


def plan(body: dict[str, Any], spec: JobSpec, pods: list[dict[str, Any]], now: datetime) -> Plan:
    """Decide one reconcile of ``body`` (an Aquila2TrainingJob) given its pods as listed now."""
    return _Planner(body, spec, pods, now).run()
