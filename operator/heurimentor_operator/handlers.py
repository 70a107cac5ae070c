"""kopf handlers, kept thin: read the job and its pods, ask the planner, send what it decided.

One daemon per job runs the reconcile loop; watch events on jobs and on their pods only wake it.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import hashlib
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import kopf

from heurimentor_operator import metrics
from heurimentor_operator.builders import build_config_map, build_pod, build_service, pod_name
from heurimentor_operator.conditions import set_condition
from heurimentor_operator.config import OperatorSettings, load_settings
from heurimentor_operator.constants import FINISHED_PHASES, GROUP, LABEL_JOB, LABEL_MANAGED_BY, MANAGER, PLURAL, VERSION
from heurimentor_operator.events import build_event, recorded_events
from heurimentor_operator.expectations import Expectations
from heurimentor_operator.k8s import Conflict, InvalidPodTemplate, Kube, client_configuration, make_api_client, merge_patch
from heurimentor_operator.planner import Event, Plan, block, plan
from heurimentor_operator.priority_pool import BOOKKEEPING, PODS, PriorityThreadPool
from heurimentor_operator.spec import JobSpec, SpecError, parse_job
from heurimentor_operator.tsm import TSMClient, TSMError, plan_rollback, rollback_annotations

log = logging.getLogger(__name__)

# Set by `heurimentor operator run` before kopf starts; tests and `kopf run` fall back to the environment.
SETTINGS: OperatorSettings | None = None


class Wakeups:
    """One asyncio.Event per job: watch events set it, the job's daemon waits on it."""

    def __init__(self) -> None:
        self._events: dict[tuple[str, str], asyncio.Event] = {}
        self._deleted: set[str] = set()  # UIDs of jobs the watch reported DELETED

    def event(self, namespace: str, name: str) -> asyncio.Event:
        return self._events.setdefault((namespace, name), asyncio.Event())

    def wake(self, namespace: str | None, name: str | None) -> None:
        if namespace and name and (namespace, name) in self._events:
            self._events[(namespace, name)].set()

    def forget(self, namespace: str, name: str) -> None:
        self._events.pop((namespace, name), None)

    def deleted(self, namespace: str | None, name: str | None, uid: str | None) -> None:
        if uid:
            self._deleted.add(uid)
        self.wake(namespace, name)

    def is_deleted(self, uid: str) -> bool:
        return uid in self._deleted


def _settings() -> OperatorSettings:
    global SETTINGS
    if SETTINGS is None:
        SETTINGS = load_settings()
    return SETTINGS


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    """kopf and our client log in with the same credentials (settings.kubeconfig or in-cluster)."""
    c = client_configuration(_settings().kubeconfig)
    # A kubeconfig's token is api_key["authorization"] = "Bearer <t>"; the in-cluster ServiceAccount's
    # is api_key["BearerToken"] = "bearer <t>" (kubernetes.config.incluster_config). Missing it, kopf
    # went anonymous in every pod (403 on /api, seen on the real node, tests/realnode).
    keys = c.api_key or {}
    token = (keys.get("authorization") or keys.get("BearerToken") or "").split(" ")[-1]
    return kopf.ConnectionInfo(
        server=c.host,
        ca_path=c.ssl_ca_cert,
        insecure=not c.verify_ssl,
        certificate_path=c.cert_file,
        private_key_path=c.key_file,
        token=token or None,
    )


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    cfg = _settings()
    # Both ends time out so a silently dropped watch reconnects (kopf's stale-watch issues).
    settings.watching.server_timeout = cfg.watch_server_timeout_s
    settings.watching.client_timeout = cfg.watch_client_timeout_s
    settings.watching.connect_timeout = cfg.watch_connect_timeout_s
    settings.networking.request_timeout = cfg.request_timeout_s
    # Peering (name, priority, standalone) comes from the command line: `heurimentor operator run`
    # passes the settings' values to kopf, which applies them before this handler runs. The lifetime
    # bounds how long a killed replica's entry holds the others back (keep-alives come sooner).
    settings.peering.lifetime = cfg.peering_lifetime_s
    # Resources are discovered once at startup: no rights needed on CRDs or namespaces.
    settings.scanning.disabled = True
    settings.persistence.finalizer = f"{GROUP}/operator"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=f"kopf.{GROUP}")
    settings.persistence.diffbase_storage = _diffbase_storage(kopf.get_default_registry())
    # Watch only our pods, filtered by the apiserver: a cluster's other pods never reach us.
    settings.watching.label_selectors["v1", "pods"] = f"{LABEL_MANAGED_BY}={MANAGER}"
    # Our own Events say what was decided; kopf's log lines stay in the log.
    settings.posting.level = logging.ERROR
    memo.cfg = cfg
    memo.wakeups = Wakeups()
    memo.executor = PriorityThreadPool(cfg.max_parallel_api_calls, thread_name_prefix="k8s")
    # TSM calls wait on other services: their own few threads, so they never hold up API calls.
    memo.tsm_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="tsm")
    memo.kube = Kube(make_api_client(cfg.kubeconfig, pool_size=cfg.max_parallel_api_calls), request_timeout_s=cfg.request_timeout_s)
    if cfg.metrics_port:
        metrics.serve(cfg.metrics_port)


class _NoEssence(kopf.AnnotationsDiffBaseStorage):
    """kopf diffs every watch event against the object's "essence", a deep copy of the whole body
    (a pod's managedFields included: about 0.5 ms of CPU a pod event, thousands in a burst), for
    its on.create/update/field handlers and its timers' idle. This operator has neither (its
    handlers read the live body), so the essence is empty and nothing is ever diffed or stored."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> Any:
        return {}


def _diffbase_storage(registry: kopf.OperatorRegistry) -> kopf.DiffBaseStorage:
    """The essence-free storage while no handler needs a diff; kopf's own as soon as one does."""
    if registry._changing.get_all_handlers():
        return kopf.AnnotationsDiffBaseStorage(prefix=f"kopf.{GROUP}")
    return _NoEssence(prefix=f"kopf.{GROUP}")


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    memo.executor.shutdown()
    memo.tsm_executor.shutdown(wait=False, cancel_futures=True)
    memo.kube.api.close()


# The watch handlers below are coroutines: kopf runs a plain function in its thread pool (a thread
# hop and a shielded future per call, thousands of times in a burst of pod events), and they only
# touch asyncio.Events, which are not safe to set from another thread anyway.
@kopf.on.event(GROUP, VERSION, PLURAL)
async def job_changed(namespace: str | None, name: str | None, type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    if type == "DELETED":
        # No finalizer (below), so kopf does not stop the job's daemons: they stop on this.
        memo.wakeups.deleted(namespace, name, body.get("metadata", {}).get("uid"))
    else:
        memo.wakeups.wake(namespace, name)


@kopf.index("", "v1", "pods", labels={LABEL_MANAGED_BY: MANAGER, LABEL_JOB: kopf.PRESENT})
async def worker_pods(namespace: str, labels: dict[str, str], body: kopf.Body, **_: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """Each job's pods as the watch last saw them: reconciles read these instead of listing pods.
    kopf fills every index before any other handler runs, so a restarted operator starts complete."""
    return {(namespace, labels[LABEL_JOB]): {"metadata": body["metadata"], "spec": body["spec"], "status": body.get("status") or {}}}


@kopf.on.event("", "v1", "pods", labels={LABEL_MANAGED_BY: MANAGER})
async def pod_changed(namespace: str | None, labels: dict[str, str], memo: kopf.Memo, **_: Any) -> None:
    memo.wakeups.wake(namespace, labels.get(LABEL_JOB))


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=5.0, initial_delay=0)
async def run_job(namespace: str, name: str, body: kopf.Body, memo: kopf.Memo, worker_pods: kopf.Index, **_: Any) -> None:
    """Reconcile this job whenever something about it changes, and at least every resync interval."""
    wake = memo.wakeups.event(namespace, name)
    # ``body`` is kopf's live view, refreshed by the job's watch before our wake-up handler runs.
    # The first pass plans from it too: the watch's initial list is as fresh as a GET, and every
    # status write is guarded by resourceVersion anyway.
    state: dict[str, Any] = {
        "pods": worker_pods,
        "expected": Expectations(),
        "live": body,
        "fresh": True,
        "posted": set(),
        "newest": None,  # the job as the apiserver itself last answered this daemon (a GET, a status write)
    }
    uid = body["metadata"]["uid"]
    try:
        while not memo.wakeups.is_deleted(uid):
            wake.clear()
            started = time.monotonic()
            try:
                delay = await reconcile(memo, namespace, name, state)
            except Conflict as e:
                log.info("%s; reconciling again from a fresh read", e)
                state["fresh"] = False
                metrics.RECONCILE_ERRORS.labels(kind="conflict").inc()
                delay = 0.05
            except Exception:
                log.exception("reconcile of Aquila2TrainingJob %s/%s failed; retrying", namespace, name)
                metrics.RECONCILE_ERRORS.labels(kind="error").inc()
                delay = 5.0
            finally:
                metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
            if delay is None:
                return
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can turn the daemon's cancellation
            # (operator shutdown) into a TimeoutError when both come at once, and this loop would go on.
            try:
                async with asyncio.timeout(min(delay, memo.cfg.resync_interval_s)):
                    await wake.wait()
            except TimeoutError:
                continue
            # A pod's create, bind and start arrive as a burst of events: one pass for all of them.
            await asyncio.sleep(memo.cfg.debounce_s)
    finally:
        memo.wakeups.forget(namespace, name)


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=5.0, initial_delay=0)
async def follow_tsm(namespace: str, name: str, body: kopf.Body, memo: kopf.Memo, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """For a job with spec.tsm.url: tell its TSM when the job is suspended (so its silence is no
    stall) and, with spec.tsm.autoRollback, apply the TSM's rollback recommendations as they come."""
    told_suspended: bool | None = None  # what the TSM last heard from this daemon; None: nothing yet
    uid = body["metadata"]["uid"]
    while not stopped and not memo.wakeups.is_deleted(uid):
        try:
            spec = parse_job(copy.deepcopy(dict(body)), default_image=memo.cfg.default_image)
        except SpecError:
            spec = None  # run_job says why
        phase = (body.get("status") or {}).get("phase")
        if spec is not None and spec.tsm.get("url") and phase not in FINISHED_PHASES:
            token = memo.cfg.tsm_token.get_secret_value() if memo.cfg.tsm_token else None
            tsm = TSMClient(spec.tsm["url"], timeout_s=memo.cfg.tsm_timeout_s, token=token)
            suspended = phase == "Suspended"
            try:
                if suspended or told_suspended is not False:
                    # Repeated while suspended: a report still in flight when it stopped clears it.
                    await _call_tsm(memo, tsm.set_suspended, spec.job_id, suspended)
                    told_suspended = suspended
                if spec.auto_rollback and not suspended:
                    await apply_tsm_rollback(memo, spec, body, tsm)
            except (TSMError, Conflict) as e:
                log.warning("cannot follow the TSM for %s: %s", spec.ref, e)
                metrics.TSM_ERRORS.inc()
            except Exception:  # e.g. the apiserver refused the patch: keep polling, say so
                log.exception("following the TSM for %s failed; retrying", spec.ref)
                metrics.TSM_ERRORS.inc()
        await _nap(stopped, memo.cfg.tsm_poll_interval_s)


async def _nap(stopped: kopf.DaemonStopped, seconds: float) -> None:
    """Sleep ``seconds`` or until the daemon is told to stop. Not ``stopped.wait(seconds)``: kopf runs
    that as a helper task around wait_for, which can end in TimeoutError when a shutdown cancels the
    daemon as the time runs out; kopf re-raises leftover tasks' errors as the operator's exit error
    (CI: KopfRunner raised it on leaving a test). Here the waiting task can only end cancelled."""
    try:
        async with asyncio.timeout(seconds):
            await stopped.wait()
    except TimeoutError:
        pass


def _daemons_need_no_finalizer() -> None:
    """kopf puts a finalizer on every object that has a daemon, so it can stop the daemon before
    the object goes. Ours stop on the watch's DELETED event, and ownerReferences already have the
    garbage collector delete the pods, ConfigMap and Service: the finalizer would only cost two
    writes per job (added, removed) and a race with the first status write. kopf has no switch for
    it, so the two daemons' handlers are re-registered with requires_finalizer off; kopf then also
    removes the finalizer that an older operator left on a job."""
    spawning = kopf.get_default_registry()._spawning
    spawning._handlers = [
        dataclasses.replace(h, requires_finalizer=False) if h.fn in (run_job, follow_tsm) else h for h in spawning._handlers
    ]


_daemons_need_no_finalizer()


async def apply_tsm_rollback(memo: kopf.Memo, spec: JobSpec, body: kopf.Body, tsm: TSMClient) -> None:
    """Annotate the job with one rollback answering the open recommendations, then close them."""
    request, superseded = plan_rollback(await _call_tsm(memo, tsm.open_rollbacks, spec.job_id))
    if request is None:
        return
    wanted = rollback_annotations(request)
    current = body.get("metadata", {}).get("annotations") or {}
    if any(current.get(k) != v for k, v in wanted.items()):
        await _call(memo, memo.kube.patch_job_annotations, spec.namespace, spec.name, spec.uid, wanted)
        reasons = "; ".join(f"{r.id}: {r.reason}" for r in request.answers)
        message = (
            f"resume before step {request.resume_before_step}, skip steps {request.skip_from_step}-{request.skip_to_step}, "
            f"answering TSM recommendations {reasons}"
        )
        kopf.event(body, type="Normal", reason="TSMRollback", message=message[:1000])
        log.info("applying TSM rollback %s to %s: resume before step %d", request.request_id, spec.ref, request.resume_before_step)
    for rec in request.answers:
        await _call_tsm(memo, tsm.close, spec.job_id, rec, "acknowledged")
        metrics.TSM_RECOMMENDATIONS.labels(outcome="acknowledged").inc()
    for rec in superseded:
        await _call_tsm(memo, tsm.close, spec.job_id, rec, "dismissed")
        metrics.TSM_RECOMMENDATIONS.labels(outcome="dismissed").inc()


async def _call_tsm(memo: kopf.Memo, fn: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(memo.tsm_executor, fn, *args)


SLOW_CALL_S = 5.0


async def _call(memo: kopf.Memo, fn: Any, *args: Any, priority: int = BOOKKEEPING) -> Any:
    """Run a blocking API call on the operator's API threads (pod operations first: priority_pool.py)."""
    queued = time.monotonic()

    def timed() -> Any:
        started = time.monotonic()
        try:
            return fn(*args)
        finally:
            done = time.monotonic()
            if done - queued > SLOW_CALL_S:
                log.warning(
                    "slow API call %s: %.1fs queued, %.1fs on the wire", getattr(fn, "__name__", fn), started - queued, done - started
                )

    return await asyncio.wrap_future(memo.executor.submit(priority, timed))


async def reconcile(memo: kopf.Memo, namespace: str, name: str, state: dict[str, Any]) -> float | None:
    """One pass; returns seconds until the next pass is due, or None when the job is gone."""
    kube: Kube = memo.kube
    from_watch = state["fresh"]
    if from_watch:
        body = _known_job(state)
    else:
        # Our last write lost a race, or a delete is due: read the job itself, not the watch's copy.
        body = await _call(memo, kube.get_job, namespace, name, priority=PODS)
        state["fresh"], state["newest"] = True, body
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    posted: set[str] = state["posted"]
    # The Events a recorded decision owes that this daemon has not posted: on its first pass all of
    # status.lastEvents (a new or restarted operator, maybe killed between a status write and its
    # Events), later those a peer recorded. One already posted is a 409, so this is idempotent.
    owed = [
        Event(e["type"], e["reason"], e["message"], e["key"]) for e in recorded_events(body.get("status") or {}) if e["key"] not in posted
    ]
    if owed:
        await _announce(memo, body, owed)
        posted.update(ev.key for ev in owed)
    try:
        spec = parse_job(body, default_image=memo.cfg.default_image)
    except SpecError as e:
        await _reject(memo, body, str(e))
        return memo.cfg.resync_interval_s
    expected: Expectations = state["expected"]
    pods = expected.view(list(state["pods"].get((namespace, name), [])))
    decided = plan(body, spec, pods, datetime.now(UTC))

    # Record the decision (guarded by resourceVersion) before deleting anything or starting a new
    # attempt: a crash in between leaves a status the next pass re-derives the same actions from,
    # so no restart is counted twice. Plain creates are safe in any order (deterministic names), and
    # pods may exist before their ConfigMap (the kubelet waits for it), so those go out together.
    old = body.get("status") or {}
    ordered = bool(decided.delete) or decided.attempt != old.get("attempt", 0)
    if ordered and from_watch:
        # Never delete on the strength of a possibly stale copy: decide again from a fresh read.
        state["fresh"] = False
        return 0.0
    together = []
    if decided.status != old:
        write_status = _write_status(memo, state, body, merge_patch(old, decided.status))
        if ordered:
            await write_status
        else:
            together.append(write_status)
    results = await asyncio.gather(
        *together, _ensure_config(memo, spec, state), _act(memo, body, spec, decided, expected), return_exceptions=True
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    recorded = not (together and isinstance(results[0], BaseException))
    # Events and counters belong to the recorded decision: once the status holds it, they go out
    # even if some pod operation failed (the next pass retries those, not the decision).
    if recorded:
        for counter in decided.counters:
            metrics.COUNTERS[counter].inc()
        # If this fails, the next pass finds the keyed ones in status.lastEvents, not in ``posted``.
        await _announce(memo, body, decided.events)
        posted.update(ev.key for ev in decided.events if ev.key)
        if isinstance(results[-1], InvalidPodTemplate):
            # The apiserver refused a pod as invalid: no retry can help until the spec changes.
            await _block(memo, state, body, spec, decided.status, str(results[-1]))
            errors.remove(results[-1])
    elif decided.create and not isinstance(results[-1], BaseException):
        # The status write lost a race (kopf adding its finalizer, a user's edit) but the pods were
        # made: the next pass finds them and would name none, so name them now.
        names = [pod_name(spec, pool, index) for pool, index in decided.create]
        kopf.event(body, type="Normal", reason="CreatedPods", message=f"created {len(names)} worker pods: {', '.join(names)}")
    if errors:
        raise errors[0]
    if decided.delete_job:
        await _call(memo, kube.delete_job, namespace, name, body["metadata"]["uid"])
        return None
    return decided.requeue_after if decided.requeue_after is not None else memo.cfg.resync_interval_s


def _known_job(state: dict[str, Any]) -> dict[str, Any]:
    """The job as kopf's watch shows it, unless the apiserver already answered us with a newer one
    (a GET, our own status write) that the watch has not delivered yet: planning from the older
    copy would lose the resourceVersion race against ourselves, or create pods for a spec already
    replaced (a scale back up seen after its scale-down) only to delete them in the next pass."""
    live, newest = state["live"], state["newest"]
    if newest is not None and _older(live["metadata"].get("resourceVersion"), newest["metadata"].get("resourceVersion")):
        return _snapshot(newest)
    return _snapshot(live)


def _snapshot(job: Any) -> dict[str, Any]:
    """A copy of the job for one pass to plan from, without metadata.managedFields: nothing here
    reads them, and they are most of what a deep copy would copy (every status write adds to them)."""
    metadata = {k: v for k, v in job["metadata"].items() if k != "managedFields"}
    return copy.deepcopy({**dict(job), "metadata": metadata})


def _older(version: str | None, than: str | None) -> bool:
    """resourceVersions are etcd revisions here, integers that only grow; any other kind is not
    compared (the watch copy is used, as without this check)."""
    try:
        return int(version) < int(than)
    except (TypeError, ValueError):
        return False


async def _write_status(
    memo: kopf.Memo, state: dict[str, Any], body: dict[str, Any], patch: dict[str, Any], *, guarded: bool = True
) -> None:
    """Merge-patch the job's status (guarded by ``body``'s resourceVersion unless told otherwise)
    and remember what the apiserver returned, for the next pass (``_known_job``)."""
    meta = body["metadata"]
    guard = meta["resourceVersion"] if guarded else None
    state["newest"] = await _call(memo, memo.kube.patch_job_status, meta["namespace"], meta["name"], guard, patch)


async def _ensure_config(memo: kopf.Memo, spec: Any, state: dict[str, Any]) -> None:
    """The headless Service once per daemon; the ConfigMap whenever its rendered data changes.

    The ConfigMap is a function of the spec alone (no replica count in it), so a rescale never
    rewrites it: a pod the kubelet has not refreshed yet reads the same facts as a new one.
    """

    async def service() -> None:
        if not state.get("service"):
            await _call(memo, memo.kube.ensure_service, build_service(spec))
            state["service"] = True

    async def config() -> None:
        if state.get("config_generation") == spec.generation:
            return  # rendered for this spec already: it depends on nothing else
        config_map = build_config_map(spec)
        digest = hashlib.sha256(json.dumps(config_map["data"], sort_keys=True).encode()).hexdigest()
        if state.get("config") != digest:
            await _call(memo, memo.kube.apply_config_map, config_map)
            state["config"] = digest
        state["config_generation"] = spec.generation

    await asyncio.gather(service(), config())


async def _act(memo: kopf.Memo, body: dict[str, Any], spec: Any, decided: Plan, expected: Expectations) -> None:
    kube: Kube = memo.kube
    pools = {p.name: p for p in spec.pools}
    manifests = [
        build_pod(
            spec, pools[pool], index, attempt=decided.attempt, rollback_step=decided.rollback_step, rollback_skip=decided.rollback_skip
        )
        for pool, index in decided.create
    ]

    async def create(manifest: dict[str, Any]) -> bool:
        created = await _call(memo, kube.create_pod, manifest, priority=PODS)
        expected.created(manifest)
        return created

    async def delete(pod: str, uid: str) -> bool:
        deleted = await _call(memo, kube.delete_pod, spec.namespace, pod, uid, priority=PODS)
        expected.deleted(uid)
        return deleted

    deletes = [delete(pod, uid) for pod, uid, _ in decided.delete]
    creates = [create(m) for m in manifests]
    results = await asyncio.gather(*deletes, *creates, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    metrics.PODS_DELETED.inc(sum(r is True for r in results[: len(deletes)]))
    metrics.PODS_CREATED.inc(sum(r is True for r in results[len(deletes) :]))
    invalid = next((e for e in errors if isinstance(e, InvalidPodTemplate)), None)
    if invalid is not None:
        raise invalid  # reconcile blocks the job and says so once
    if errors:
        # Quota, admission webhooks, a pool template the apiserver refuses: say so where users look.
        kopf.event(body, type="Warning", reason="FailedPodOperation", message=f"{len(errors)} pod operations failed: {errors[0]}")
        raise RuntimeError(f"Aquila2TrainingJob {spec.ref}: {len(errors)} pod operations failed, first: {errors[0]}") from errors[0]


async def _announce(memo: kopf.Memo, body: dict[str, Any], events: list[Event]) -> None:
    """Post a pass's Events: those of a recorded decision (keyed) under their deterministic names,
    awaited, so none is lost once the pass ends; the rest through kopf's background poster."""
    now = datetime.now(UTC)
    for ev in events:
        if not ev.key:
            kopf.event(body, type=ev.type, reason=ev.reason, message=ev.message)
    keyed = [build_event(body, key=ev.key, type_=ev.type, reason=ev.reason, message=ev.message, now=now) for ev in events if ev.key]
    await asyncio.gather(*(_call(memo, memo.kube.create_event, manifest) for manifest in keyed))


async def _block(memo: kopf.Memo, state: dict[str, Any], body: dict[str, Any], spec: JobSpec, status: dict[str, Any], message: str) -> None:
    """Blocked, reason InvalidPodTemplate, with the apiserver's message; the planner then removes
    the job's workers and creates none until the spec's generation changes."""
    blocked, event = block(status, spec, "InvalidPodTemplate", message, datetime.now(UTC))
    # No resourceVersion guard: this follows our own status write of this pass.
    await _write_status(memo, state, state["newest"] or body, merge_patch(status, blocked), guarded=False)
    log.warning("Aquila2TrainingJob %s blocked: %s", spec.ref, message)
    if event is not None:
        await _announce(memo, body, [event])
        state["posted"].add(event.key)


async def _reject(memo: kopf.Memo, body: dict[str, Any], message: str) -> None:
    """A spec the CRD let through but the operator cannot run: say so once, in status and an Event."""
    status = dict(body.get("status") or {})
    conditions = list(status.get("conditions") or [])
    now = datetime.now(UTC)
    if set_condition(conditions, "Failed", True, "InvalidSpec", message, now=now):
        kopf.event(body, type="Warning", reason="InvalidSpec", message=message)
        status.update(phase="Failed", conditions=conditions)
        meta = body["metadata"]
        await _call(memo, memo.kube.patch_job_status, meta["namespace"], meta["name"], meta["resourceVersion"], status)
