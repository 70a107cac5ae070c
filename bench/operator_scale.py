"""Operator at scale: 100 Aquila2TrainingJobs x 8 workers applied at once on 200 KWOK GPU nodes.

Measures seconds from `kubectl apply` until every worker pod exists and is bound to a node, and
the reconcile duration p50/p99, with the operator in-process as the chart's least-privilege user
against a real control plane (etcd, kube-apiserver, controller-manager, scheduler, KWOK), and the
operator's own apiserver writes per kind (from the apiserver's metrics) until every job's status
says it runs.

Baseline, run first in the same script on the same cluster: the same 800 pods created directly by
a client with the operator's API parallelism (no operator, no CRD): the floor that the apiserver,
scheduler and KWOK set on this machine. The ratio operator/baseline is the operator's overhead.

    .venv/bin/python bench/operator_scale.py [--jobs 100] [--workers 8] [--nodes 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # hack/ (dev tooling) is not an installed package

from apiserver_requests import Requests  # noqa: E402  (bench/ is on sys.path: this script's folder)

from hack.testenv.kube import ControlPlane  # noqa: E402

CHART = REPO / "charts" / "heurimentor"
PARALLEL_API_CALLS = 16


def job_manifest(index: int, namespace: str, workers: int) -> dict:
    pools = [
        {
            "name": "a100",
            "nodeSelector": {"heurimentor.io/accelerator": "nvidia-a100"},
            "acceleratorType": "nvidia-a100",
            "resources": {"limits": {"nvidia.com/gpu": 1}},
            "relativeThroughput": 1.0,
            "maxReplicas": workers // 2,
        },
        {
            "name": "h800",
            "nodeSelector": {"heurimentor.io/accelerator": "nvidia-h800"},
            "acceleratorType": "nvidia-h800",
            "resources": {"limits": {"nvidia.com/gpu": 1}},
            "relativeThroughput": 2.0,
        },
    ]
    return {
        "apiVersion": "heurimentor.io/v1alpha1",
        "kind": "Aquila2TrainingJob",
        "metadata": {"name": f"bench-{index:03d}", "namespace": namespace},
        "spec": {
            "model": {"preset": "debug"},
            "nprocPerNode": 1,
            "elastic": {"minReplicas": 1, "maxReplicas": workers, "replicas": workers},
            "pools": pools,
            "hyperparameters": {"globalBatchSize": 64, "steps": 1000},
        },
    }


def operator_user(plane: ControlPlane) -> Path:
    """The chart's operator ClusterRole bound to a non-admin user, as in the tests."""
    rendered = subprocess.run(
        [str(plane.bin_dir / "helm"), "template", "hm", str(CHART), "--show-only", "templates/operator-rbac.yaml"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    role = next(d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "hm-operator")
    binding = next(d for d in docs if d["kind"] == "ClusterRoleBinding")
    binding["subjects"] = [{"kind": "User", "name": "bench-operator", "apiGroup": "rbac.authorization.k8s.io"}]
    plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([role, binding]))
    return plane.user_kubeconfig("bench-operator")


class BoundWatcher:
    """Polls the watch cache (resourceVersion=0, cheap) for pods with a node."""

    def __init__(self, plane: ControlPlane, selector: str):
        from kubernetes import client

        self.core = client.CoreV1Api(plane.api_client())
        self.selector = selector

    def counts(self) -> tuple[int, int, int]:
        raw = self.core.list_pod_for_all_namespaces(label_selector=self.selector, resource_version="0", _preload_content=False)
        pods = json.loads(raw.data)["items"]
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        bound = sum(bool(p["spec"].get("nodeName")) for p in live)
        running = sum(p.get("status", {}).get("phase") == "Running" for p in live)
        return len(live), bound, running

    def wait(self, total: int, start: float, timeout: float = 600) -> tuple[float, float]:
        """Seconds from ``start`` until all ``total`` pods are bound, and until all run."""
        t_bound = None
        while time.perf_counter() - start < timeout:
            n, bound, running = self.counts()
            now = time.perf_counter() - start
            if t_bound is None and n >= total and bound >= total:
                t_bound = now
            if t_bound is not None and running >= total:
                return t_bound, now
            time.sleep(0.25)
        raise TimeoutError(f"after {timeout}s: {self.counts()} (pods, bound, running) of {total}")


def delete_namespaces(plane: ControlPlane, namespaces: list[str]) -> None:
    """Delete and wait until they are gone: a namespace still being emptied (its pods, Events,
    ConfigMaps deleted by the namespace controller and the garbage collector) would load the next
    run and add its deletes, and its jobs' last Events, to that run's request counts."""
    for ns in namespaces:
        plane.kubectl("delete", "namespace", ns, "--wait=false")
    plane.kubectl("wait", "--for=delete", "--timeout=300s", *(f"namespace/{ns}" for ns in namespaces), check=False, timeout=330)


def run_baseline(plane: ControlPlane, kubeconfig: Path, jobs: int, workers: int) -> tuple[float, float, float]:
    """The same pods, created directly by the operator's user (same RBAC, same API priority level):
    seconds until bound, until running, and this process's CPU seconds meanwhile (its polling)."""
    from kubernetes import client

    from heurimentor_operator.builders import assign_pools, build_pod
    from heurimentor_operator.spec import parse_job

    ns = plane.create_namespace("bench-baseline")
    pods = []
    for i in range(jobs):
        body = job_manifest(i, ns, workers)
        body["metadata"]["uid"] = f"baseline-{i}"
        spec = parse_job(body)
        assigned = assign_pools(spec, workers)
        for pool in spec.pools:
            for index in range(assigned[pool.name]):
                pod = build_pod(spec, pool, index, attempt=0)
                pod["metadata"].pop("ownerReferences")  # no owner: the garbage collector would take them
                pod["metadata"]["labels"]["bench"] = "baseline"
                pods.append(pod)
    core = client.CoreV1Api(plane.api_client(kubeconfig))
    watcher = BoundWatcher(plane, "bench=baseline")
    cpu0, start = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(PARALLEL_API_CALLS) as pool:
        list(pool.map(lambda p: core.create_namespaced_pod(ns, p, _preload_content=False), pods))
    result = (*watcher.wait(len(pods), start), time.process_time() - cpu0)
    delete_namespaces(plane, [ns])
    return result


def run_operator(plane: ControlPlane, kubeconfig: Path, jobs: int, workers: int, round_: int = 0) -> dict:
    import kopf.testing
    from kubernetes import client

    from heurimentor_operator import handlers
    from heurimentor_operator.config import OperatorSettings

    durations: list[float] = []
    lock = threading.Lock()
    original = handlers.reconcile

    async def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return await original(*args, **kwargs)
        finally:
            with lock:
                durations.append(time.perf_counter() - t0)

    handlers.reconcile = timed
    handlers.SETTINGS = OperatorSettings(
        kubeconfig=kubeconfig, metrics_port=0, health_port=0, log_level="WARNING", max_parallel_api_calls=PARALLEL_API_CALLS
    )
    namespaces = [plane.create_namespace(f"bench-{round_}-{i}") for i in range(10)]
    manifests = [job_manifest(i, namespaces[i % len(namespaces)], workers) for i in range(jobs)]
    watcher = BoundWatcher(plane, "app.kubernetes.io/managed-by=heurimentor-operator")
    requests = Requests(plane)
    args = ["run", "--standalone", "--all-namespaces", "--quiet", "-m", "heurimentor_operator.handlers"]
    with kopf.testing.KopfRunner(args, timeout=60):
        time.sleep(3)  # the operator's watches are up
        custom = client.CustomObjectsApi(plane.api_client())
        before = requests.scrape()
        cpu0, start = time.process_time(), time.perf_counter()
        # "Applied at once": created in parallel, as many clients (or one `kubectl apply` per job) would.
        with ThreadPoolExecutor(PARALLEL_API_CALLS) as pool:
            list(
                pool.map(
                    lambda m: custom.create_namespaced_custom_object(
                        "heurimentor.io", "v1alpha1", m["metadata"]["namespace"], "aquila2trainingjobs", m, _preload_content=False
                    ),
                    manifests,
                )
            )
        applied = time.perf_counter() - start
        bound, running = watcher.wait(jobs * workers, start)
        cpu_bound = time.process_time() - cpu0
        # ...and the operator has seen them run: every job's status says `workers` replicas.
        while True:
            items = json.loads(plane.kubectl("get", "a2j", "-A", "-o", "json").stdout)["items"]
            if all((j.get("status") or {}).get("replicas") == workers for j in items):
                break
            time.sleep(0.5)
        status_done = time.perf_counter() - start
        time.sleep(2)  # let the last wake-ups drain
        # The benchmark's own requests: the job creates (its pod LISTs are on the watch cache; not counted as writes).
        requests.count_own("POST", "heurimentor.io", "aquila2trainingjobs", len(manifests))
        writes = requests.of_controller(before, requests.scrape(), requests.own)
        with lock:
            burst = sorted(durations)
            durations.clear()
        # Steady state: touch every job once (a label change: nothing to create) and time those passes.
        with ThreadPoolExecutor(PARALLEL_API_CALLS) as pool:
            list(
                pool.map(
                    lambda m: custom.patch_namespaced_custom_object(
                        "heurimentor.io",
                        "v1alpha1",
                        m["metadata"]["namespace"],
                        "aquila2trainingjobs",
                        m["metadata"]["name"],
                        {"metadata": {"labels": {"bench": "touched"}}},
                        _preload_content=False,
                    ),
                    manifests,
                )
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with lock:
                if len(durations) >= jobs:
                    break
            time.sleep(0.2)
        with lock:
            steady = sorted(durations)
    handlers.reconcile = original
    delete_namespaces(plane, namespaces)
    return {
        "applied": applied,
        "bound": bound,
        "running": running,
        "status": status_done,
        "burst": burst,
        "steady": steady,
        "writes": writes,
        "cpu_bound": cpu_bound,
    }


def percentile(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1] if len(samples) > 1 else samples[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=1, help="operator runs in a row on this control plane (baseline once)")
    args = parser.parse_args()
    total = args.jobs * args.workers
    state = Path(tempfile.mkdtemp(prefix="heurimentor-bench-"))
    plane = ControlPlane(state)
    plane.start()
    try:
        plane.kubectl("apply", "-f", str(CHART / "crds"))
        plane.kubectl("wait", "--for=condition=Established", "crd/aquila2trainingjobs.heurimentor.io")
        t0 = time.perf_counter()
        plane.add_kwok_nodes(args.nodes // 2, "bench-a100", accelerator="nvidia-a100", gpus=8, timeout=300)
        plane.add_kwok_nodes(args.nodes - args.nodes // 2, "bench-h800", accelerator="nvidia-h800", gpus=8, timeout=300)
        print(f"{args.nodes} KWOK GPU nodes Ready in {time.perf_counter() - t0:.1f}s", flush=True)
        kubeconfig = operator_user(plane)
        base_bound, base_running, base_cpu = run_baseline(plane, kubeconfig, args.jobs, args.workers)
        print(
            f"baseline (direct pod creates, {PARALLEL_API_CALLS} threads): {total} pods bound in {base_bound:.1f}s, running in {base_running:.1f}s; "
            f"this process's CPU until bound {base_cpu:.1f}s; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}",
            flush=True,
        )
        for round_ in range(args.repeat):
            result = run_operator(plane, kubeconfig, args.jobs, args.workers, round_)
            print(
                f"operator run {round_ + 1}: {args.jobs} jobs x {args.workers} workers created in {result['applied']:.1f}s; "
                f"all {total} pods bound in {result['bound']:.1f}s, running in {result['running']:.1f}s; "
                f"every job's status at {args.workers} replicas in {result['status']:.1f}s (target < 30 s); "
                f"this process's CPU until bound {result['cpu_bound']:.1f}s (operator + the same polling as the baseline)"
            )
            for label, samples in (
                ("during the burst (incl. waits for the shared API thread pool)", result["burst"]),
                ("steady state (one pass per job, nothing to create)", result["steady"]),
            ):
                print(
                    f"reconcile {label}: n={len(samples)}, p50 {1000 * percentile(samples, 50):.1f} ms, "
                    f"p99 {1000 * percentile(samples, 99):.1f} ms, max {1000 * samples[-1]:.1f} ms"
                )
            w = result["writes"]
            print(
                f"operator writes until every job runs: {w['writes']} ({w['writes'] - total} beyond the {total} pod creates; "
                f"{w['writes'] / args.jobs:.1f} per job), reads {w['reads']} (with the benchmark's own polling); per kind: {w['by_kind']}; "
                f"refused by the apiserver: {w['refused'] or 'none'}"
            )
            print(f"ratio operator/baseline (pods bound): {result['bound'] / base_bound:.2f}x", flush=True)
            print(f"load average (1/5/15 min): {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
        from heurimentor_operator import metrics

        errors = {
            s.labels["kind"]: int(s.value) for m in metrics.RECONCILE_ERRORS.collect() for s in m.samples if s.name.endswith("_total")
        }
        print(f"operator counters: pods created {int(metrics.PODS_CREATED._value.get())}, reconcile errors {errors or 'none'}")
    finally:
        plane.stop()


if __name__ == "__main__":
    main()
