"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and KWOK (fake nodes), built by hack/build-tools.sh. Used by the `kube` pytest
fixture (processes die with the test session) and by `make cluster-up` (detached, stopped by
`make cluster-down`)."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from hack.testenv import kwok
from hack.testenv.certs import CertificateAuthority
from hack.testenv.procs import ManagedProcess, ServerStartError, free_port, http_ok, log_tail, retry_port_clash

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")

# The fake nodes every control plane starts with (see tests/conftest.py and the README).
DEFAULT_NODES: tuple[dict[str, Any], ...] = (
    {"count": 1, "name_prefix": "kwok-gpu-a100", "accelerator": "nvidia-a100", "gpus": 8},
    {"count": 1, "name_prefix": "kwok-gpu-h800", "accelerator": "nvidia-h800", "gpus": 8},
    {"count": 1, "name_prefix": "kwok-cpu", "accelerator": None, "gpus": 0},
)


def tools_bin_dir() -> Path:
    """Where hack/build-tools.sh puts (or would put) the binaries for the pinned versions."""
    out = subprocess.run([str(REPO_ROOT / "hack" / "build-tools.sh"), "--bin-dir"], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise ServerStartError(f"hack/build-tools.sh --bin-dir failed: {out.stderr.strip()}")
    bin_dir = Path(out.stdout.strip())
    missing = [c for c in (*COMPONENTS, "kubectl") if not os.access(bin_dir / c, os.X_OK)]
    if missing:
        raise ServerStartError(f"{', '.join(missing)} not built in {bin_dir}: run `make tools` first")
    return bin_dir


def write_kubeconfig(path: Path, server: str, ca: Path, cert: Path, key: Path, user: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "heurimentor-local", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [{"name": user, "context": {"cluster": "heurimentor-local", "user": user}}],
        "current-context": user,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


class ControlPlane:
    """Start/stop the control plane in `state_dir` (pki/, etcd/, logs/, admin.kubeconfig, state.json)."""

    # The addresses in the apiserver's serving certificate: loopback and the `kubernetes` Service.
    apiserver_ips: tuple[str, ...] = ("127.0.0.1", "10.96.0.1")

    def __init__(self, state_dir: Path, *, detached: bool = False, bin_dir: Path | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.detached = detached
        self.bin_dir = bin_dir or tools_bin_dir()
        self.pki = self.state_dir / "pki"
        self.logs = self.state_dir / "logs"
        self.kubeconfig = self.state_dir / "admin.kubeconfig"
        self.ca = CertificateAuthority(self.pki)
        self.processes: dict[str, ManagedProcess] = {}
        self.api_port = 0

    # ----- public API (the `kube` fixture) -----------------------------------------------------------

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def env(self) -> dict[str, str]:
        """os.environ plus KUBECONFIG for the admin, and the tools dir first on PATH (kubectl, helm)."""
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        kubeconfig: Path | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / "kubectl"), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        result = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, cmd, result.stdout, result.stderr)
        return result

    def api_client(self, kubeconfig: Path | None = None):
        """A kubernetes.client.ApiClient for the admin (or the given kubeconfig)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(kubeconfig or self.kubeconfig))

    def user_kubeconfig(self, user: str, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig with a client certificate for `user` in `groups`: no rights until RBAC binds some."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in user)
        cert, key = self.ca.issue(f"user-{safe}", user, tuple(groups))
        return write_kubeconfig(self.state_dir / f"user-{safe}.kubeconfig", self.server, self.ca.cert, cert, key, user)

    def add_kwok_nodes(
        self,
        count: int,
        name_prefix: str,
        accelerator: str | None = None,
        gpus: int = 0,
        labels: dict[str, str] | None = None,
        *,
        wait: bool = True,
        timeout: float = 60,
    ) -> list[str]:
        """Create `count` fake nodes `<name_prefix>-<i>` (continuing after existing ones); wait until Ready."""
        existing = set(self.kubectl("get", "nodes", "-o", "name").stdout.split())
        names: list[str] = []
        index = 0
        while len(names) < count:
            name = f"{name_prefix}-{index}"
            if f"node/{name}" not in existing:
                names.append(name)
            index += 1
        manifests = [kwok.node_manifest(n, accelerator=accelerator, gpus=gpus, labels=labels) for n in names]
        self.kubectl("create", "-f", "-", input=yaml.safe_dump_all(manifests))
        if wait:
            self.wait_nodes_ready(names, timeout)
        return names

    def wait_nodes_ready(self, names: Sequence[str], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        pending = list(names)
        while time.monotonic() < deadline:
            nodes = json.loads(self.kubectl("get", "nodes", "-o", "json").stdout)["items"]
            by_name = {n["metadata"]["name"]: n for n in nodes}
            pending = [name for name in names if not _node_ready(by_name.get(name))]
            if not pending:
                return
            time.sleep(0.3)
        raise ServerStartError(
            f"KWOK nodes {pending} not Ready (or still tainted not-ready) after {timeout:.0f}s\n{log_tail(self.logs / 'kwok.log')}"
        )

    def create_namespace(self, name: str, timeout: float = 30) -> str:
        """Create a namespace and wait for its `default` ServiceAccount (pods are refused until it exists)."""
        self.kubectl("create", "namespace", name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0:
                return name
            time.sleep(0.2)
        raise ServerStartError(f"namespace {name}: no default ServiceAccount after {timeout:.0f}s")

    # ----- lifecycle -------------------------------------------------------------------------------

    def start(self, nodes: Sequence[dict[str, Any]] = DEFAULT_NODES) -> ControlPlane:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        try:
            self._make_pki()
            for start in (self._start_etcd, self._start_apiserver, self._start_controller_manager, self._start_scheduler):
                retry_port_clash(start)
            self._start_kwok()
            self._save_state()
            for spec in nodes:
                self.add_kwok_nodes(**spec, wait=False)
            self.wait_nodes_ready([n for spec in nodes for n in _names(spec)], timeout=90)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop in reverse start order (KWOK and controllers first, etcd last)."""
        for name in reversed(list(self.processes)):
            self.processes[name].stop()
        self.processes.clear()

    def _make_pki(self) -> None:
        self.ca.create()
        self.ca.issue(
            "apiserver",
            "kube-apiserver",
            server_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            server_ips=self.apiserver_ips,
        )
        self.ca.issue("admin", "heurimentor-admin", ("system:masters",))
        self.ca.issue("controller-manager", "system:kube-controller-manager")
        self.ca.issue("scheduler", "system:kube-scheduler")
        self.ca.issue("kwok", "heurimentor-kwok", ("system:masters",))
        self.ca.rsa_key_pair("service-account")

    def _component_kubeconfig(self, name: str) -> Path:
        return write_kubeconfig(
            self.state_dir / f"{name}.kubeconfig",
            self.server,
            self.ca.cert,
            self.pki / f"{name}.crt",
            self.pki / f"{name}.key",
            name,
        )

    def _launch(self, name: str, args: list[str]) -> ManagedProcess:
        process = ManagedProcess(
            name,
            [str(self.bin_dir / args[0]), *args[1:]],
            self.logs / f"{name}.log",
            die_with_parent=not self.detached,
            cwd=self.state_dir,
        )
        process.start()
        self.processes[name] = process
        return process

    def _admin_tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca.cert))
        context.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return context

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        process = self._launch("etcd", self._etcd_args(peer))
        process.wait_ready(lambda: _etcd_healthy(self.etcd_url), 60, what="healthy")

    def _etcd_args(self, peer: int) -> list[str]:
        return [
            "etcd",
            "--name=default",
            f"--data-dir={self.state_dir / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=default=http://127.0.0.1:{peer}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
            "--quota-backend-bytes=4294967296",
        ]

    def _start_apiserver(self) -> None:
        self.api_port = self._pick_api_port()
        process = self._launch("kube-apiserver", self._apiserver_args())
        context = self._admin_tls()
        process.wait_ready(lambda: http_ok(f"{self.server}/readyz", context=context), 120, what="ready (/readyz)")
        self.kubeconfig = write_kubeconfig(
            self.kubeconfig, self.server, self.ca.cert, self.pki / "admin.crt", self.pki / "admin.key", "heurimentor-admin"
        )

    def _pick_api_port(self) -> int:
        return free_port()

    def _apiserver_args(self) -> list[str]:
        pki = self.pki
        return [
            "kube-apiserver",
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.api_port}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={self.ca.cert}",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'service-account.pub'}",
            f"--service-account-signing-key-file={pki / 'service-account.key'}",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            "--v=1",
        ]

    def _serving_flags(self, name: str) -> tuple[list[str], int]:
        port = free_port()
        kubeconfig = self._component_kubeconfig(name)
        cert_dir = self.state_dir / f"{name}-serving"
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={cert_dir}",
            "--leader-elect=false",
            "--v=1",
        ], port

    def _wait_healthz(self, process: ManagedProcess, port: int) -> None:
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # the component's own self-signed serving cert
        process.wait_ready(lambda: http_ok(f"https://127.0.0.1:{port}/healthz", context=insecure), 90, "healthy")

    def _start_controller_manager(self) -> None:
        flags, port = self._serving_flags("controller-manager")
        process = self._launch(
            "kube-controller-manager",
            [
                "kube-controller-manager",
                *flags,
                f"--service-account-private-key-file={self.pki / 'service-account.key'}",
                f"--root-ca-file={self.ca.cert}",
                "--use-service-account-credentials=true",
                f"--cluster-signing-cert-file={self.ca.cert}",
                f"--cluster-signing-key-file={self.ca.key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
            ],
        )
        self._wait_healthz(process, port)

    def _start_scheduler(self) -> None:
        flags, port = self._serving_flags("scheduler")
        process = self._launch("kube-scheduler", ["kube-scheduler", *flags])
        self._wait_healthz(process, port)

    def _start_kwok(self) -> None:
        config = self.state_dir / "kwok.yaml"
        config.write_text(kwok.config_yaml())
        kubeconfig = self._component_kubeconfig("kwok")
        process = self._launch(
            "kwok",
            [
                "kwok",
                f"--kubeconfig={kubeconfig}",
                f"--config={config}",
                f"--cidr={POD_CIDR}",
                "--node-lease-duration-seconds=40",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={kwok.FAKE_NODE_ANNOTATION}=fake",
            ],
        )
        # KWOK has no readiness endpoint here: it must stay up while its informers start.
        time.sleep(1.0)
        if not process.running():
            raise ServerStartError(f"kwok exited with code {process.proc.returncode}\n{log_tail(process.log_path)}")

    # ----- detached clusters (make cluster-up / cluster-down) ---------------------------------------

    def _save_state(self) -> None:
        state = {
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "bin_dir": str(self.bin_dir),
            "pids": {name: p.pid for name, p in self.processes.items()},
            "binaries": {name: p.args[0] for name, p in self.processes.items()},
        }
        (self.state_dir / "state.json").write_text(json.dumps(state, indent=2))

    @staticmethod
    def load_state(state_dir: Path) -> dict[str, Any] | None:
        try:
            return json.loads((Path(state_dir) / "state.json").read_text())
        except FileNotFoundError:
            return None

    @staticmethod
    def live_pids(state: dict[str, Any]) -> dict[str, int]:
        """The recorded processes still running the recorded binary (a recycled pid is not ours)."""
        live = {}
        for name, pid in state["pids"].items():
            try:
                exe = os.readlink(f"/proc/{pid}/exe")
            except OSError:
                continue
            if exe == state["binaries"][name]:
                live[name] = pid
        return live

    @classmethod
    def stop_detached(cls, state_dir: Path, timeout: float = 15) -> list[str]:
        """Stop a `cluster-up` control plane one component at a time, etcd last: an apiserver whose
        etcd is already gone takes a long time to shut down."""
        state = cls.load_state(state_dir)
        if state is None:
            return []
        stopped = []
        for name in reversed(COMPONENTS):
            pid = cls.live_pids(state).get(name)
            if pid is None:
                continue
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while name in cls.live_pids(state) and time.monotonic() < deadline:
                time.sleep(0.1)
            if name in cls.live_pids(state):
                os.kill(pid, signal.SIGKILL)
            stopped.append(name)
        return sorted(stopped, key=COMPONENTS.index)


def _names(spec: dict[str, Any]) -> list[str]:
    return [f"{spec['name_prefix']}-{i}" for i in range(spec["count"])]


def _node_ready(node: dict[str, Any] | None) -> bool:
    if node is None:
        return False
    conditions = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
    taints = {t["key"] for t in node.get("spec", {}).get("taints", [])}
    return conditions.get("Ready") == "True" and "node.kubernetes.io/not-ready" not in taints


def _etcd_healthy(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:  # noqa: S310 - loopback only
        return json.load(resp).get("health") == "true"
