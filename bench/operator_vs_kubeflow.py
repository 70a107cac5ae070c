"""Our operator against Kubeflow's training-operator, side by side on one control plane.

The same workload for both, one after the other in one run on the same KWOK GPU nodes, in three
rounds that alternate who goes first: 100 jobs x 8 workers (a PyTorchJob with an elasticPolicy vs
an Aquila2TrainingJob, one GPU per worker), timed until every pod is bound and until every job
reports running with all 8 workers; then every job scaled 8 -> 4 -> 8, then all deleted. Counted per
controller: apiserver requests (deltas of the apiserver's apiserver_request_total over each phase,
on the resources a controller touches, minus the benchmark's own requests), controller CPU seconds
and peak RSS (from /proc). Each controller runs as its own process: Kubeflow's built from the
module proxy by hack/build-kubeflow.sh (`v1.8.1`, its default flags but loopback ports), ours as
`heurimentor operator run --standalone` under the chart's least-privilege ClusterRole.

    .venv/bin/python bench/operator_vs_kubeflow.py [--jobs 100] [--workers 8] [--rounds 3]
    .venv/bin/python bench/operator_vs_kubeflow.py --behaviour   # the side-by-side scenarios instead

Behaviour scenarios (each against both, one controller at a time, printed as a table): a scaled-up
pod that stays Pending (Kubeflow #1751), scale-down of a running job (#1509), a worker that fails
again after every restart (Trainer #3779), the controller SIGKILLed while it creates 20 jobs, and
one job over two device pools.

Kubeflow's validating webhook is not called: its Service cannot be reached from a KWOK cluster, so
its ValidatingWebhookConfiguration is created without webhooks (its cert rotator needs the object).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # hack/ (dev tooling) is not an installed package

from apiserver_requests import Requests  # noqa: E402  (bench/ is on sys.path: this script's folder)
from operator_scale import operator_user  # noqa: E402

from hack.testenv.kube import ControlPlane  # noqa: E402
from hack.testenv.procs import free_port, http_ok  # noqa: E402

log = logging.getLogger("operator_vs_kubeflow")
CHART = REPO / "charts" / "heurimentor"
PARALLEL = 16  # client threads creating, scaling and deleting jobs
NAMESPACES = 10
TIMEOUT_S = 600
KUBEFLOW_KINDS = ("pytorchjobs", "tfjobs", "mpijobs", "xgboostjobs", "mxjobs", "paddlejobs")


# -- the two workloads ------------------------------------------------------------------------------
def a2j_manifest(index: int, namespace: str, workers: int) -> dict[str, Any]:
    return {
        "apiVersion": "heurimentor.io/v1alpha1",
        "kind": "Aquila2TrainingJob",
        "metadata": {"name": f"bench-{index:03d}", "namespace": namespace},
        "spec": {
            "model": {"preset": "debug"},
            "image": "trainer:bench",
            "nprocPerNode": 1,
            "elastic": {"minReplicas": 1, "maxReplicas": workers, "replicas": workers},
            "pools": [
                {
                    "name": "h800",
                    "nodeSelector": {"heurimentor.io/accelerator": "nvidia-h800"},
                    "resources": {"limits": {"nvidia.com/gpu": 1}},
                }
            ],
            "hyperparameters": {"globalBatchSize": 64, "steps": 1000},
        },
    }


def pytorchjob_manifest(index: int, namespace: str, workers: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": f"bench-{index:03d}", "namespace": namespace},
        "spec": {
            "elasticPolicy": {"rdzvBackend": "c10d", "minReplicas": 1, "maxReplicas": workers, "maxRestarts": 3},
            "runPolicy": {"backoffLimit": 3},
            "pytorchReplicaSpecs": {
                "Worker": {
                    "replicas": workers,
                    "restartPolicy": "OnFailure",
                    "template": {
                        "spec": {
                            "nodeSelector": {"heurimentor.io/accelerator": "nvidia-h800"},
                            "containers": [
                                {
                                    "name": "pytorch",
                                    "image": "trainer:bench",
                                    "command": ["torchrun", "train.py"],
                                    "resources": {"limits": {"nvidia.com/gpu": 1}},
                                }
                            ],
                        }
                    },
                }
            },
        },
    }


class Workload:
    """One controller's job kind: how to make, scale and read its jobs."""

    def __init__(self, name: str, group: str, plural: str, make, replicas_path: list[str], pod_selector: str):
        self.name, self.group, self.plural, self.make = name, group, plural, make
        self.replicas_path, self.pod_selector = replicas_path, pod_selector

    def scale_patch(self, replicas: int) -> dict[str, Any]:
        patch: dict[str, Any] = replicas
        for key in reversed(self.replicas_path):
            patch = {key: patch}
        return patch

    def reports_running(self, job: dict[str, Any], workers: int) -> bool:
        status = job.get("status") or {}
        if self.group == "heurimentor.io":
            return status.get("phase") == "Running" and status.get("replicas") == workers
        running = any(c.get("type") == "Running" and c.get("status") == "True" for c in status.get("conditions") or [])
        return running and ((status.get("replicaStatuses") or {}).get("Worker") or {}).get("active") == workers


OURS = Workload(
    "heurimentor",
    "heurimentor.io",
    "aquila2trainingjobs",
    a2j_manifest,
    ["spec", "elastic", "replicas"],
    "app.kubernetes.io/managed-by=heurimentor-operator",
)
KUBEFLOW = Workload(
    "kubeflow",
    "kubeflow.org",
    "pytorchjobs",
    pytorchjob_manifest,
    ["spec", "pytorchReplicaSpecs", "Worker", "replicas"],
    "training.kubeflow.org/operator-name=pytorchjob-controller",
)
VERSION = {"heurimentor.io": "v1alpha1", "kubeflow.org": "v1"}


# -- measuring --------------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- the controllers --------------------------------------------------------------------------------
def install_kubeflow(plane: ControlPlane, bin_dir: Path) -> None:
    plane.kubectl("apply", "--server-side", "-f", str(bin_dir))  # every CRD its default flags need
    for kind in KUBEFLOW_KINDS:
        plane.kubectl("wait", "--for=condition=Established", f"crd/{kind}.kubeflow.org")
    plane.create_namespace("kubeflow")
    plane.kubectl(
        "apply",
        "-f",
        "-",
        input=yaml.safe_dump_all(
            [
                {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "training-operator-webhook-cert", "namespace": "kubeflow"}},
                {
                    "apiVersion": "admissionregistration.k8s.io/v1",
                    "kind": "ValidatingWebhookConfiguration",
                    "metadata": {"name": "validator.training-operator.kubeflow.org"},
                },
            ]
        ),
    )


class Controller:
    """One controller process, started fresh for each round (peak RSS is per round)."""

    def __init__(self, workload: Workload, command: list[str], env: dict[str, str], ready_url: str, log_path: Path, while_starting=None):
        self.workload, self.command, self.env, self.ready_url, self.log_path = workload, command, env, ready_url, log_path
        self.while_starting = while_starting  # called while waiting for readiness (Kubeflow: "mount" its cert Secret)
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_path, "a") as out:
            self.process = subprocess.Popen(self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.workload.name} exited {self.process.returncode}: {self.log_path.read_text()[-3000:]}")
            if self.while_starting:
                self.while_starting()
            if _answers(self.ready_url):
                time.sleep(2)  # controllers start right after readiness (Kubeflow: in a goroutine)
                return
            time.sleep(0.3)
        self.process.kill()  # never leave a controller behind the benchmark
        self.process.wait()
        raise RuntimeError(f"{self.workload.name} not ready at {self.ready_url}: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def mount_webhook_secret(plane: ControlPlane) -> None:
    """Do the kubelet's part: Kubeflow's cert rotator fills its Secret and then waits for it to
    appear as files in its (fixed) cert dir, where the Deployment mounts it."""
    out = plane.kubectl("get", "secret", "training-operator-webhook-cert", "-n", "kubeflow", "-o", "json", check=False)
    data = json.loads(out.stdout).get("data") or {} if out.returncode == 0 else {}
    if not data.get("tls.crt"):
        return
    import base64

    cert_dir = Path("/tmp/k8s-webhook-server/serving-certs")
    cert_dir.mkdir(parents=True, exist_ok=True)
    for key, value in data.items():
        # Atomically and only when changed, as the kubelet's volume does: the controller re-reads
        # these files at any moment, and a half-written key stops its webhook server (it exits 1).
        path, content = cert_dir / key, base64.b64decode(value)
        if not path.exists() or path.read_bytes() != content:
            partial = path.with_name(f".{key}.partial")
            partial.write_bytes(content)
            os.replace(partial, path)


def _answers(url: str) -> bool:
    try:
        return http_ok(url)
    except OSError:  # not listening yet, or 5xx (urllib raises HTTPError, an OSError)
        return False


def make_controllers(plane: ControlPlane, kubeflow_bin: Path, state: Path) -> dict[str, Controller]:
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "VIRTUAL_ENV")}
    health = free_port()
    ours = Controller(
        OURS,
        [sys.executable, "-m", "heurimentor", "operator", "run", "--standalone", "--metrics-port", "0", "--health-port", str(health)],
        {
            **base,
            "KUBECONFIG": str(operator_user(plane)),
            "HEURIMENTOR_OPERATOR_LOG_LEVEL": "WARNING",
            "HEURIMENTOR_OPERATOR_LOG_JSON": "false",
        },
        f"http://127.0.0.1:{health}/healthz",
        state / "heurimentor-operator.log",
    )
    probe = free_port()
    theirs = Controller(
        KUBEFLOW,
        [
            str(kubeflow_bin / "training-operator"),
            f"--metrics-bind-address=127.0.0.1:{free_port()}",
            f"--health-probe-bind-address=127.0.0.1:{probe}",
            f"--webhook-server-port={free_port()}",
        ],
        {**base, "KUBECONFIG": str(plane.kubeconfig), "MY_POD_NAMESPACE": "kubeflow"},
        f"http://127.0.0.1:{probe}/readyz",
        state / "training-operator.log",
        while_starting=lambda: mount_webhook_secret(plane),
    )
    return {"heurimentor": ours, "kubeflow": theirs}


# -- one controller's round -------------------------------------------------------------------------
class Round:
    def __init__(self, plane: ControlPlane, requests: Requests, controller: Controller, jobs: int, workers: int):
        from kubernetes import client

        self.plane, self.requests, self.controller = plane, requests, controller
        self.w, self.jobs, self.workers = controller.workload, jobs, workers
        api = plane.api_client()
        self.custom, self.core = client.CustomObjectsApi(api), client.CoreV1Api(api)
        self.namespaces = [plane.create_namespace(f"{self.w.name}-{i}-{int(time.time() * 1000) % 10**8}") for i in range(NAMESPACES)]
        self.manifests = [self.w.make(i, self.namespaces[i % NAMESPACES], workers) for i in range(jobs)]

    def pods(self) -> list[dict[str, Any]]:
        raw = self.core.list_pod_for_all_namespaces(label_selector=self.w.pod_selector, resource_version="0", _preload_content=False)
        self.requests.count_own("LIST", "", "pods")
        return [
            p
            for p in json.loads(raw.data)["items"]
            if p["metadata"]["namespace"] in self.namespaces and not p["metadata"].get("deletionTimestamp")
        ]

    def jobs_now(self) -> list[dict[str, Any]]:
        raw = self.custom.list_cluster_custom_object(
            self.w.group, VERSION[self.w.group], self.w.plural, resource_version="0", _preload_content=False
        )
        self.requests.count_own("LIST", self.w.group, self.w.plural)
        return [j for j in json.loads(raw.data)["items"] if j["metadata"]["namespace"] in self.namespaces]

    def wait(self, what: str, check, start: float) -> float:
        while time.perf_counter() - start < TIMEOUT_S:
            if check():
                return time.perf_counter() - start
            time.sleep(0.25)
        raise TimeoutError(f"{self.w.name}: {what} not reached in {TIMEOUT_S}s")

    def at_size(self, replicas: int) -> bool:
        """Every job has ``replicas`` live pods, all Running, and its status says so."""
        pods = self.pods()
        return (
            len(pods) == self.jobs * replicas
            and sum(p["status"].get("phase") == "Running" for p in pods) == self.jobs * replicas
            and sum(self.w.reports_running(j, replicas) for j in self.jobs_now()) == self.jobs
        )

    def parallel(self, fn, items) -> None:
        with ThreadPoolExecutor(PARALLEL) as pool:
            list(pool.map(fn, items))

    def run(self) -> dict[str, Any]:
        w, total, version = self.w, self.jobs * self.workers, VERSION[self.w.group]
        self.controller.start()
        pid = self.controller.process.pid
        cpu0, scrape0, own0 = cpu_seconds(pid), self.requests.scrape(), Counter(self.requests.own)
        result: dict[str, Any] = {}
        start = time.perf_counter()
        self.parallel(
            lambda m: self.custom.create_namespaced_custom_object(
                w.group, version, m["metadata"]["namespace"], w.plural, m, _preload_content=False
            ),
            self.manifests,
        )
        self.requests.count_own("POST", w.group, w.plural, len(self.manifests))
        result["bound_s"] = self.wait(
            "every pod bound",
            lambda: (p := self.pods()) and len(p) >= total and sum(bool(x["spec"].get("nodeName")) for x in p) >= total,
            start,
        )
        result["running_s"] = self.wait(
            "every job reports running", lambda: sum(w.reports_running(j, self.workers) for j in self.jobs_now()) == self.jobs, start
        )
        result["create_cpu_s"], scrape1, own1 = cpu_seconds(pid) - cpu0, self.requests.scrape(), Counter(self.requests.own)
        result["create_requests"] = self.requests.of_controller(scrape0, scrape1, own1 - own0)
        # Scale-down of a running job: do the workers that stay keep running (Kubeflow #1509)?
        kept = {(p["metadata"]["namespace"], p["metadata"]["name"]): p["metadata"]["uid"] for p in self.pods()}
        scale_start = time.perf_counter()
        half = self.workers // 2
        for replicas in (half, self.workers):
            step = time.perf_counter()
            patch = w.scale_patch(replicas)
            self.parallel(
                lambda m, patch=patch: self.custom.patch_namespaced_custom_object(
                    w.group, version, m["metadata"]["namespace"], w.plural, m["metadata"]["name"], patch, _preload_content=False
                ),
                self.manifests,
            )
            self.requests.count_own("PATCH", w.group, w.plural, len(self.manifests))
            result[f"scale_to_{replicas}_s"] = self.wait(f"every job at {replicas}", lambda n=replicas: self.at_size(n), step)
            if replicas == half:
                after = {(p["metadata"]["namespace"], p["metadata"]["name"]): p["metadata"]["uid"] for p in self.pods()}
                result["restarted_by_scale_down"] = sum(after[k] != kept.get(k) for k in after)
        result["scale_s"] = time.perf_counter() - scale_start
        scrape2, own2 = self.requests.scrape(), Counter(self.requests.own)
        result["scale_requests"] = self.requests.of_controller(scrape1, scrape2, own2 - own1)
        delete_start = time.perf_counter()
        self.parallel(
            lambda m: self.custom.delete_namespaced_custom_object(
                w.group, version, m["metadata"]["namespace"], w.plural, m["metadata"]["name"], _preload_content=False
            ),
            self.manifests,
        )
        self.requests.count_own("DELETE", w.group, w.plural, len(self.manifests))
        result["delete_s"] = self.wait("every pod gone", lambda: not self.pods() and not self.jobs_now(), delete_start)
        scrape3, own3 = self.requests.scrape(), Counter(self.requests.own)
        result["delete_requests"] = self.requests.of_controller(scrape2, scrape3, own3 - own2)
        result["cpu_s"], result["peak_rss_mib"] = cpu_seconds(pid) - cpu0, peak_rss_mib(pid)
        result["load_average"] = [round(x, 1) for x in os.getloadavg()]  # 1, 5, 15 min: the machine is shared
        self.controller.stop()
        # Gone before the next round: the namespace controller's deletes would count as its controller's.
        for ns in self.namespaces:
            self.plane.kubectl("delete", "namespace", ns, "--wait=false")
        self.plane.kubectl(
            "wait", "--for=delete", "--timeout=300s", *(f"namespace/{ns}" for ns in self.namespaces), check=False, timeout=330
        )
        return result


# -- behaviour, side by side -----------------------------------------------------------------------
class Scenarios:
    """Small scenarios on dedicated nodes; every one leaves its namespace deleted."""

    def __init__(self, plane: ControlPlane, controllers: dict[str, Controller]):
        from kubernetes import client

        self.plane, self.controllers = plane, controllers
        api = plane.api_client()
        self.custom, self.core = client.CustomObjectsApi(api), client.CoreV1Api(api)

    def job(self, w: Workload, name: str, ns: str, workers: int, **tweak) -> dict[str, Any]:
        body = w.make(0, ns, workers)
        body["metadata"]["name"] = name
        if w is OURS:
            body["spec"]["elastic"]["pendingTimeoutSeconds"] = 15
            body["spec"]["runPolicy"] = {"backoffLimit": 3, "restartBackoffSeconds": 1}
        if tweak.get("max_replicas"):  # room to scale up past the size it starts at
            if w is OURS:
                body["spec"]["elastic"]["maxReplicas"] = tweak["max_replicas"]
            else:
                body["spec"]["elasticPolicy"]["maxReplicas"] = tweak["max_replicas"]
        sel = tweak.get("accelerator")
        if sel:
            if w is OURS:
                body["spec"]["pools"][0]["nodeSelector"] = {"heurimentor.io/accelerator": sel}
            else:
                body["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["nodeSelector"] = {"heurimentor.io/accelerator": sel}
        return body

    def create(self, w: Workload, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(w.group, VERSION[w.group], body["metadata"]["namespace"], w.plural, body)

    def scale(self, w: Workload, ns: str, name: str, replicas: int) -> None:
        self.custom.patch_namespaced_custom_object(w.group, VERSION[w.group], ns, w.plural, name, w.scale_patch(replicas))

    def get(self, w: Workload, ns: str, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(w.group, VERSION[w.group], ns, w.plural, name)

    def pods(self, ns: str) -> list[dict[str, Any]]:
        raw = self.core.list_namespaced_pod(ns, _preload_content=False)
        return [p for p in json.loads(raw.data)["items"] if not p["metadata"].get("deletionTimestamp")]

    def until(self, check, timeout: float = 120) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return True
            time.sleep(0.5)
        return False

    def state(self, w: Workload, job: dict[str, Any]) -> str:
        status = job.get("status") or {}
        if w is OURS:
            conds = {c["type"]: c.get("reason") for c in status.get("conditions") or [] if c.get("status") == "True"}
            return f"phase {status.get('phase')}, {status.get('replicas')} running, conditions {conds}"
        conds = [c["type"] for c in status.get("conditions") or [] if c.get("status") == "True"]
        return f"conditions {conds}, workers {((status.get('replicaStatuses') or {}).get('Worker') or {})}"

    def pending_scale_up(self, w: Workload, ns: str) -> str:
        """2 workers fit on the 'small' node (2 GPUs); scale to 4 and wait 60 s."""
        self.create(w, self.job(w, "pending", ns, 2, accelerator="bench-small", max_replicas=4))
        self.until(lambda: sum(p["status"].get("phase") == "Running" for p in self.pods(ns)) == 2)
        self.scale(w, ns, "pending", 4)
        time.sleep(60)
        pending = sum(p["status"].get("phase") == "Pending" for p in self.pods(ns))
        return f"after 60 s: {pending} pods Pending; {self.state(w, self.get(w, ns, 'pending'))}"

    def scale_down(self, w: Workload, ns: str) -> str:
        self.create(w, self.job(w, "down", ns, 4))
        self.until(lambda: sum(p["status"].get("phase") == "Running" for p in self.pods(ns)) == 4)
        before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in self.pods(ns)}
        self.scale(w, ns, "down", 2)
        self.until(lambda: len(self.pods(ns)) == 2, 60)
        time.sleep(5)
        after = {p["metadata"]["name"]: p["metadata"]["uid"] for p in self.pods(ns)}
        restarted = sorted(n for n, uid in after.items() if before.get(n) != uid)
        return f"4 -> 2: {len(after)} pods left, {len(restarted)} of them recreated {restarted}"

    def finished(self, w: Workload, job: dict[str, Any]) -> bool:
        status = job.get("status") or {}
        if w is OURS:
            return status.get("phase") in ("Succeeded", "Failed")
        return any(c.get("type") in ("Succeeded", "Failed") and c.get("status") == "True" for c in status.get("conditions") or [])

    def warnings(self, ns: str) -> dict[str, int]:
        """Warning Events in ``ns`` by reason, with their repeat counts."""
        raw = self.core.list_namespaced_event(ns, _preload_content=False)
        counts: Counter = Counter()
        for e in json.loads(raw.data)["items"]:
            if e.get("type") == "Warning":
                counts[e.get("reason")] += e.get("count") or 1
        return dict(counts)

    def repeated_failure(self, w: Workload, ns: str) -> str:
        """Fail a worker with exit code 137 each time one comes back, up to 6 times (backoffLimit 3
        on both). Kubeflow's worker uses restartPolicy ExitCode here, where 137 is retryable: its
        pods run with restartPolicy Never and the controller recreates them, as ours does (with
        OnFailure a real kubelet would restart the container in place, which KWOK does not model)."""
        body = self.job(w, "flaky", ns, 2)
        if w is KUBEFLOW:
            body["spec"]["pytorchReplicaSpecs"]["Worker"]["restartPolicy"] = "ExitCode"
        self.create(w, body)
        failed: set[str] = set()

        def fresh_worker() -> dict[str, Any] | None:
            return next((p for p in self.pods(ns) if p["status"].get("phase") == "Running" and p["metadata"]["uid"] not in failed), None)

        for _ in range(6):
            if not self.until(lambda: fresh_worker() or self.finished(w, self.get(w, ns, "flaky")), 60) or fresh_worker() is None:
                break
            victim = fresh_worker()
            failed.add(victim["metadata"]["uid"])
            self.plane.kubectl("annotate", "pod", victim["metadata"]["name"], "-n", ns, "kwok.heurimentor.io/exit-code=137", "--overwrite")
            time.sleep(3)
        time.sleep(10)
        job = self.get(w, ns, "flaky")
        restarts = (job.get("status") or {}).get("restarts") if w is OURS else None
        counted = f"status.restarts {restarts}; " if w is OURS else ""
        return f"{len(failed)} failures injected; {counted}{self.state(w, job)}; Warning Events {self.warnings(ns)}"

    def killed_mid_reconcile(self, w: Workload, ns: str) -> str:
        """20 jobs x 8 workers created, the controller SIGKILLed 1.5 s in, then started again."""
        ctl = self.controllers[w.name]
        bodies = [self.job(w, f"kill-{i:02d}", ns, 8) for i in range(20)]
        with ThreadPoolExecutor(PARALLEL) as pool:
            list(pool.map(lambda b: self.create(w, b), bodies))
        time.sleep(1.5)
        ctl.process.kill()
        ctl.process.wait()
        made = len(self.pods(ns))
        ctl.start()
        self.until(lambda: sum(p["status"].get("phase") == "Running" for p in self.pods(ns)) >= 160, 300)
        time.sleep(10)
        pods = self.pods(ns)
        per_job = Counter(
            p["metadata"].get("labels", {}).get("heurimentor.io/job" if w is OURS else "training.kubeflow.org/job-name") for p in pods
        )
        orphans = sum(not p["metadata"].get("ownerReferences") for p in pods)
        extra = {k: v for k, v in per_job.items() if v != 8}
        return f"{made} pods made before the kill; after restart {len(pods)} pods, jobs off 8: {extra or 'none'}, orphans {orphans}"

    def two_pools(self, w: Workload, ns: str) -> str:
        """4 workers over A100 and H800 nodes: our pools; Kubeflow's one Worker template (node affinity to both)."""
        body = self.job(w, "hetero", ns, 4)
        if w is OURS:
            h800 = body["spec"]["pools"][0]
            body["spec"]["pools"] = [
                {
                    **h800,
                    "name": "a100",
                    "nodeSelector": {"heurimentor.io/accelerator": "nvidia-a100"},
                    "maxReplicas": 2,
                    "relativeThroughput": 1.0,
                },
                {**h800, "relativeThroughput": 2.0},
            ]
        else:
            tpl = body["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]
            tpl.pop("nodeSelector")
            tpl["affinity"] = {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {"key": "heurimentor.io/accelerator", "operator": "In", "values": ["nvidia-a100", "nvidia-h800"]}
                                ]
                            }
                        ]
                    }
                }
            }
        self.create(w, body)
        self.until(lambda: sum(p["status"].get("phase") == "Running" for p in self.pods(ns)) == 4)
        nodes = {
            n["metadata"]["name"]: n["metadata"]["labels"].get("heurimentor.io/accelerator")
            for n in json.loads(self.plane.kubectl("get", "nodes", "-o", "json").stdout)["items"]
        }
        placed = Counter(nodes.get(p["spec"].get("nodeName")) for p in self.pods(ns))
        time.sleep(3)
        shares = [(p["name"], p.get("batchShare")) for p in (self.get(w, ns, "hetero").get("status") or {}).get("pools") or []]
        return f"placed {dict(placed)}; per-pool batch shares {shares or 'none (one template, one config)'}"

    def all(self) -> dict[str, tuple[str, Any]]:
        return {
            "pending": ("scaled-up pod stays Pending (#1751)", self.pending_scale_up),
            "scale-down": ("scale-down of a running job (#1509)", self.scale_down),
            "failure": ("worker fails after every restart (Trainer #3779)", self.repeated_failure),
            "kill": ("controller SIGKILLed mid-reconcile", self.killed_mid_reconcile),
            "pools": ("one job over two device pools", self.two_pools),
        }

    def run(self, only: list[str] | None = None) -> list[tuple[str, str, str]]:
        rows = []
        for key, (title, fn) in self.all().items():
            if only and key not in only:
                continue
            results = {}
            for name in ("heurimentor", "kubeflow"):
                ctl = self.controllers[name]
                ns = self.plane.create_namespace(f"{name}-{fn.__name__.replace('_', '-')}")
                ctl.start()
                try:
                    results[name] = fn(ctl.workload, ns)
                finally:
                    ctl.stop()
                    # Gone before the other controller's turn: its pods would hold the small node's GPUs.
                    self.plane.kubectl("delete", "namespace", ns, "--timeout=120s", check=False, timeout=150)
                log.info("%s / %s: %s", title, name, results[name])
            rows.append((title, results["heurimentor"], results["kubeflow"]))
        return rows


def summary(name: str, runs: list[dict[str, Any]]) -> dict[str, float]:
    def med(key, sub=None):
        values = sorted(r[key][sub] if sub else r[key] for r in runs)
        return values[len(values) // 2]

    return {
        "bound_s": med("bound_s"),
        "running_s": med("running_s"),
        "scale_s": med("scale_s"),
        "delete_s": med("delete_s"),
        "create_writes": med("create_requests", "writes"),
        "create_reads": med("create_requests", "reads"),
        "scale_writes": med("scale_requests", "writes"),
        "delete_writes": med("delete_requests", "writes"),
        "cpu_s": med("cpu_s"),
        "peak_rss_mib": med("peak_rss_mib"),
        "restarted_by_scale_down": med("restarted_by_scale_down"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=120, help="KWOK nodes of 8 GPUs (h800)")
    parser.add_argument("--behaviour", action="store_true", help="run the side-by-side scenarios instead of the timings")
    parser.add_argument(
        "--scenario", action="append", choices=["pending", "scale-down", "failure", "kill", "pools"], help="with --behaviour: only these"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    built = subprocess.run([str(REPO / "hack" / "build-kubeflow.sh")], capture_output=True, text=True, check=True)
    kubeflow_bin = Path(built.stdout.strip().splitlines()[-1])
    state = Path(tempfile.mkdtemp(prefix="heurimentor-vs-kubeflow-"))
    plane = ControlPlane(state)
    plane.start()
    try:
        plane.kubectl("apply", "-f", str(CHART / "crds"))
        plane.kubectl("wait", "--for=condition=Established", "crd/aquila2trainingjobs.heurimentor.io")
        install_kubeflow(plane, kubeflow_bin)
        plane.add_kwok_nodes(args.nodes, "bench-h800", accelerator="nvidia-h800", gpus=8, timeout=300)
        controllers = make_controllers(plane, kubeflow_bin, state)
        if args.behaviour:
            plane.add_kwok_nodes(1, "bench-small", accelerator="bench-small", gpus=2)
            plane.add_kwok_nodes(4, "bench-a100", accelerator="nvidia-a100", gpus=8)
            print("| scenario | heurimentor | Kubeflow training-operator v1.8.1 |\n| --- | --- | --- |")
            for title, ours_row, theirs_row in Scenarios(plane, controllers).run(args.scenario):
                print(f"| {title} | {ours_row} | {theirs_row} |")
            return
        requests = Requests(plane)
        runs: dict[str, list[dict[str, Any]]] = {"heurimentor": [], "kubeflow": []}
        for r in range(args.rounds):
            order = ["heurimentor", "kubeflow"] if r % 2 == 0 else ["kubeflow", "heurimentor"]
            for name in order:
                result = Round(plane, requests, controllers[name], args.jobs, args.workers).run()
                runs[name].append(result)
                log.info("round %d %s: %s", r + 1, name, json.dumps(result))
        ours, theirs = summary("heurimentor", runs["heurimentor"]), summary("kubeflow", runs["kubeflow"])
        print(f"\n{args.jobs} jobs x {args.workers} workers, {args.rounds} rounds (medians), baseline: Kubeflow training-operator v1.8.1")
        print(f"{'':28}{'heurimentor':>14}{'kubeflow':>14}{'ours/theirs':>14}")
        for key, label in (
            ("bound_s", "every pod bound (s)"),
            ("running_s", "every job running (s)"),
            ("scale_s", "scale 8->4->8 (s)"),
            ("delete_s", "delete all (s)"),
            ("create_writes", "writes, create phase"),
            ("create_reads", "reads, create phase"),
            ("scale_writes", "writes, scale phase"),
            ("delete_writes", "writes, delete phase"),
            ("cpu_s", "controller CPU (s)"),
            ("peak_rss_mib", "peak RSS (MiB)"),
            ("restarted_by_scale_down", "pods restarted by 8->4"),
        ):
            ratio = ours[key] / theirs[key] if theirs[key] else float("nan")
            print(f"{label:28}{ours[key]:>14.1f}{theirs[key]:>14.1f}{ratio:>13.2f}x")
        for name in runs:
            print(f"{name} writes per kind, create phase of round 1: {runs[name][0]['create_requests']['by_kind']}")
            print(f"{name} writes per kind, scale phase of round 1: {runs[name][0]['scale_requests']['by_kind']}")
            print(f"{name} writes the apiserver refused, create phase of round 1: {runs[name][0]['create_requests']['refused'] or 'none'}")
            print(f"{name} load average (1/5/15 min) at the end of each round: {[r['load_average'] for r in runs[name]]}")
    finally:
        plane.stop()


if __name__ == "__main__":
    main()
