"""Helpers of the operator tests (``from tests.operator.testlib import ...``): the chart's paths, polling, the operator in-process, kubectl-level job helpers."""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "heurimentor"
CRD = CHART / "crds" / "aquila2trainingjobs.heurimentor.io.yaml"
OPERATOR_USER = "heurimentor-operator-under-test"
TSM_TOKEN = secrets.token_urlsafe(32)  # production (the default) refuses a guessable one


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.25) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bind_chart_worker_role(kube, namespace: str, subject: dict[str, str]) -> None:
    """The chart's worker ClusterRole (as `helm template` renders it) bound in ``namespace`` to ``subject``."""
    rendered = subprocess.run(
        [str(kube.bin_dir / "helm"), "template", "hm", str(CHART), "--show-only", "templates/operator-rbac.yaml"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    role = next(d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "ClusterRole" and d["metadata"]["name"] == "hm-worker")
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "hm-worker", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "hm-worker"},
        "subjects": [subject],
    }
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([role, binding]))


def worker_kubeconfig(kube, namespace: str) -> Path:
    """A user bound in ``namespace`` to the chart's worker ClusterRole, as the workers' ServiceAccount would be."""
    user = f"worker-{namespace}"
    bind_chart_worker_role(kube, namespace, {"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"})
    return kube.user_kubeconfig(user)


@contextlib.contextmanager
def running_operator(
    kubeconfig: Path, *, metrics_port: int = 0, standalone: bool = True, peering: str | None = None, priority: int = 0
) -> Iterator[Any]:
    """The operator in this process (kopf.testing.KopfRunner), logged in as ``kubeconfig``'s user."""
    import kopf.testing

    from heurimentor_operator import handlers
    from heurimentor_operator.config import OperatorSettings

    previous = handlers.SETTINGS
    handlers.SETTINGS = OperatorSettings(
        kubeconfig=kubeconfig,
        metrics_port=metrics_port,
        health_port=0,
        resync_interval_s=5.0,
        debounce_s=0.2,
        standalone=standalone,
        peering_name=peering or "heurimentor-operator",
        priority=priority,
        watch_server_timeout_s=60,
        watch_client_timeout_s=70,
        log_json=False,
        tsm_poll_interval_s=0.5,
        tsm_token=TSM_TOKEN,
    )
    args = ["run", "--all-namespaces", "--verbose", "-m", "heurimentor_operator.handlers"]
    args += ["--standalone"] if standalone else ["--peering", peering or "heurimentor-operator", "--priority", str(priority)]
    with kopf.testing.KopfRunner(args, timeout=30) as runner:
        yield runner
    handlers.SETTINGS = previous


class Jobs:
    """kubectl-level helpers for one namespace (as the admin: a user of the platform)."""

    def __init__(self, kube, namespace: str):
        self.kube, self.ns = kube, namespace

    def apply(self, body: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        body = {**body, "metadata": {**body["metadata"], "namespace": self.ns}}
        return self.kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(body), check=False)

    def get(self, name: str) -> dict[str, Any] | None:
        out = self.kube.kubectl("get", "a2j", name, "-n", self.ns, "-o", "json", check=False)
        return json.loads(out.stdout) if out.returncode == 0 else None

    def status(self, name: str) -> dict[str, Any]:
        return (self.get(name) or {}).get("status") or {}

    def pods(self, name: str) -> list[dict[str, Any]]:
        out = self.kube.kubectl("get", "pods", "-n", self.ns, "-l", f"heurimentor.io/job={name}", "-o", "json")
        return [p for p in json.loads(out.stdout)["items"] if not p["metadata"].get("deletionTimestamp")]

    def events(self, name: str) -> list[dict[str, Any]]:
        out = self.kube.kubectl("get", "events", "-n", self.ns, "--field-selector", f"involvedObject.name={name}", "-o", "json")
        return json.loads(out.stdout)["items"]

    def condition(self, name: str, type_: str) -> dict[str, Any]:
        return next((c for c in self.status(name).get("conditions", []) if c["type"] == type_), {})

    def exit_pod(self, pod: str, code: int) -> None:
        """KWOK moves a pod with this annotation to Succeeded (0) or Failed (that exit code)."""
        self.kube.kubectl("annotate", "pod", pod, "-n", self.ns, f"kwok.heurimentor.io/exit-code={code}", "--overwrite")
