"""A real Kubernetes node: kubelet + containerd + runc running real containers, for the tests that
KWOK cannot fake (images, volumes, the trainer in a container) and `make cluster-up REAL_NODE=1`.

The whole cluster lives in a network namespace this module creates, with a private mount
namespace (`unshare --net --mount --propagation slave`, held by one `sleep` process): etcd, the
apiserver, controller-manager, scheduler, containerd, kubelet, kube-proxy, the cluster DNS
(hack/testenv/clusterdns.py), the default StorageClass's provisioner (hostPath folders under the
state dir, hack/testenv/hostpath_provisioner.py), the CNI bridge and so every pod. Nothing is connected to the
machine's network: the test reaches the apiserver through a relay (hack/testenv/relay.py) on
127.0.0.1 at the same port the apiserver listens on inside, so one kubeconfig serves both sides.

In the mount namespace `/run`, `/var/lib` and `/var/log` (the kubelet's and containerd's fixed
paths) are folders of the node's own, and the machine-wide sysctls the kubelet writes are files of
its own; the kubelet's cgroups go under a root named for this node. Teardown (also after a failed
start) kills what runs in the node's cgroups and namespace, removes the cgroups, and lets the
namespaces, with their iptables rules, bridge and mounts, vanish with their last process.

Binaries: hack/build-tools.sh (`--node-bin-dir`); runc and the CNI plugins are Debian's.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import yaml

from hack.testenv.cgroups import CGROUP_ROOT_PREFIX, make_cgroups, pids_in_cgroups, remove_cgroups, remove_stale_cgroups
from hack.testenv.kube import POD_CIDR, REPO_ROOT, SERVICE_CIDR, ControlPlane, tools_bin_dir, write_kubeconfig
from hack.testenv.procs import ManagedProcess, ServerStartError, log_tail, require_binary

NODE_NAME = "realnode"
# The bridge's own address: the node's InternalIP, the address the apiserver advertises (so pods
# reach it through the `kubernetes` Service) and the cluster DNS.
NODE_IP = "10.244.0.1"
POD_SUBNET = "10.244.0.0/24"
BRIDGE = "hm0"
CLUSTER_DOMAIN = "cluster.local"
NODE_COMPONENTS = ("containerd", "kubelet", "kube-proxy", "clusterdns")
# Machine-wide sysctls the kubelet sets at start (protectKernelDefaults: false).
KUBELET_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
# Fixed paths of the kubelet, containerd, runc and the CNI plugins, hidden behind the node's own.
PRIVATE_DIRS = ("/run", "/var/lib", "/var/log")


def node_bin_dir() -> Path:
    """Where hack/build-tools.sh puts the node's binaries (kubelet, kube-proxy, containerd, shim, ctr, pause)."""
    out = subprocess.run([str(REPO_ROOT / "hack" / "build-tools.sh"), "--node-bin-dir"], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise ServerStartError(f"hack/build-tools.sh --node-bin-dir failed: {out.stderr.strip()}")
    bin_dir = Path(out.stdout.strip())
    missing = [
        b for b in ("kubelet", "kube-proxy", "containerd", "containerd-shim-runc-v2", "ctr", "pause.oci.tar") if not (bin_dir / b).is_file()
    ]
    if missing:
        raise ServerStartError(f"{', '.join(missing)} not built in {bin_dir}: run `make tools` first")
    return bin_dir


def image_archives(names: Iterable[str], images_dir: Path | None = None) -> list[Path]:
    """The newest OCI archive of each image `make images` built (hack/build-images.sh: <name>-<hash>.oci.tar)."""
    images_dir = images_dir or Path(os.environ.get("HEURIMENTOR_CACHE", Path.home() / ".cache" / "heurimentor")) / "images"
    found = []
    for name in names:
        candidates = sorted(images_dir.glob(f"{name}-*.oci.tar"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise ServerStartError(f"no {name} image in {images_dir}: run `make images` first")
        found.append(candidates[-1])
    return found


def published_image_name(local_name: str) -> str:
    """The name the chart's default values and deploy/*.yaml give an image `make images` builds as
    localhost/heurimentor/<name>:<tag> (the node knows it by both, so those manifests run unchanged)."""
    registry = yaml.safe_load((REPO_ROOT / "charts" / "heurimentor" / "values.yaml").read_text())["images"]["registry"]
    return f"{registry}/{local_name.rsplit('/', 1)[1]}"


def archive_image_name(archive: Path) -> str:
    """The image name an OCI archive carries (what `ctr images import` names it)."""
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
    return index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]


class RealNode(ControlPlane):
    """A control plane and one real node (`realnode`, InternalIP 10.244.0.1) in namespaces of their own.

    The API of ControlPlane (kubectl, api_client, user_kubeconfig, create_namespace, env) works from
    the test's side. `images` are OCI archives imported into containerd before the kubelet starts,
    so pods with `imagePullPolicy: IfNotPresent` run them; every registry points at a dead port.
    """

    apiserver_ips = ("127.0.0.1", "10.96.0.1", NODE_IP)

    def __init__(
        self,
        state_dir: Path,
        *,
        images: Sequence[Path] = (),
        node_labels: dict[str, str] | None = None,
        detached: bool = False,
        bin_dir: Path | None = None,
        node_bin: Path | None = None,
    ) -> None:
        super().__init__(state_dir, detached=detached, bin_dir=bin_dir or tools_bin_dir())
        self.node_bin = node_bin or node_bin_dir()
        self.images = list(images)
        self.node_labels = dict(node_labels or {})
        self.holder: ManagedProcess | None = None
        self.cgroup_root = f"{CGROUP_ROOT_PREFIX}{secrets.token_hex(4)}"
        self.containerd_socket = self.state_dir / "containerd" / "containerd.sock"
        self.timings: dict[str, float] = {}

    # ----- lifecycle -------------------------------------------------------------------------------

    def start(self, nodes: Sequence[dict] = ()) -> RealNode:  # noqa: ARG002 - no fake nodes on a real one
        for tool in ("unshare", "nsenter", "ip", "iptables", "runc"):
            require_binary(tool, "run `make system-deps` (util-linux, iproute2, iptables, runc)")
        if not Path("/usr/lib/cni/bridge").exists():
            raise ServerStartError("CNI plugins not found in /usr/lib/cni: run `make system-deps` (containernetworking-plugins)")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        started = time.monotonic()
        try:
            remove_stale_cgroups()
            self._enter_namespaces()
            self._make_pki()
            for start in (self._start_etcd, self._start_apiserver, self._start_controller_manager, self._start_scheduler):
                start()
            self.timings["control_plane_s"] = time.monotonic() - started
            node_started = time.monotonic()
            self._start_containerd()
            self._import_images([self.node_bin / "pause.oci.tar", *self.images])
            self.timings["images_s"] = time.monotonic() - node_started
            kubelet_started = time.monotonic()
            self._start_kubelet()
            self._start_kube_proxy()
            self._start_dns()
            self._start_storage()
            self._save_state()
            self.wait_real_node_ready(timeout=120)
            self.timings["kubelet_to_ready_s"] = time.monotonic() - kubelet_started
            self.timings["node_start_to_ready_s"] = time.monotonic() - node_started
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop everything, also after a failed start: the node, what runs in its cgroups and
        namespaces (pods, shims), the control plane, then the namespaces' holder; remove the cgroups."""
        for name in ("hostpath-provisioner", "clusterdns", "kube-proxy", "kubelet", "containerd"):
            if name in self.processes:
                self.processes.pop(name).stop()
        if self.holder is not None:
            self._kill_namespace_processes()
        super().stop()
        if self.holder is not None:
            self.holder.stop()
            self.holder = None
        remove_cgroups(self.cgroup_root)

    def wait_real_node_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            node = self.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
            if node.returncode == 0:
                conditions = {c["type"]: c["status"] for c in json.loads(node.stdout).get("status", {}).get("conditions", [])}
                if conditions.get("Ready") == "True":
                    return
            for name in ("kubelet", "containerd"):
                if not self.processes[name].running():
                    raise ServerStartError(f"{name} exited\n{log_tail(self.logs / f'{name}.log')}")
            time.sleep(0.2)
        raise ServerStartError(f"node {NODE_NAME} not Ready after {timeout:.0f}s\n{log_tail(self.logs / 'kubelet.log')}")

    # ----- helpers for tests -----------------------------------------------------------------------

    def in_namespaces(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command inside the node's network and mount namespaces (e.g. curl a pod IP)."""
        result = subprocess.run([*self._nsenter(), *args], capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, args, result.stdout, result.stderr)
        return result

    def kill_containerd(self, down_for: float) -> None:
        """A node-level fault: SIGKILL containerd (its shims, and so the containers, live on), keep it
        down ``down_for`` seconds, then start it again on the same state."""
        process = self.processes["containerd"]
        process.proc.kill()
        process.proc.wait(10)
        time.sleep(down_for)
        process.start()
        process.wait_ready(self._containerd_serving, 60, what="serving again")

    def ctr(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """ctr against the node's containerd (its socket is a file, reachable from outside the namespaces)."""
        cmd = [str(self.node_bin / "ctr"), f"--address={self.containerd_socket}", "--namespace=k8s.io", *args]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise ServerStartError(f"ctr {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def node_pids(self) -> list[int]:
        """Every process in the node's network namespace or cgroups (teardown must leave none)."""
        net_ns = os.readlink(f"/proc/{self.holder.pid}/ns/net") if self.holder and self.holder.running() else None
        pids = set(pids_in_cgroups(self.cgroup_root))
        if net_ns:
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    try:
                        if os.readlink(entry / "ns" / "net") == net_ns:
                            pids.add(int(entry.name))
                    except OSError:
                        continue
        # Not the holder and not the control plane this object runs (it stops them itself).
        pids -= {p.pid for p in (self.holder, *self.processes.values()) if p is not None}
        return sorted(pid for pid in pids if not _zombie(pid))

    # ----- namespaces ------------------------------------------------------------------------------

    def _nsenter(self, mount: bool = True) -> list[str]:
        assert self.holder is not None and self.holder.pid
        return ["nsenter", f"--target={self.holder.pid}", "--net", *(["--mount"] if mount else []), "--"]

    def _enter_namespaces(self) -> None:
        self.holder = ManagedProcess(
            "namespaces",
            ["unshare", "--net", "--mount", "--propagation", "slave", "--", "sleep", "infinity"],
            self.logs / "namespaces.log",
            die_with_parent=not self.detached,
        )
        self.holder.start()
        ours = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:  # unshare has run once the holder's network namespace is not ours
                if self.holder.running() and os.readlink(f"/proc/{self.holder.pid}/ns/net") != ours:
                    break
            except OSError:
                pass
            time.sleep(0.02)
        else:
            raise ServerStartError(f"unshare --net --mount did not start\n{log_tail(self.holder.log_path)}")
        root = self.state_dir / "root"
        sysctls = self.state_dir / "sysctl"
        lines = [
            "set -e",
            "ip link set lo up",
            f"ip link add {BRIDGE} type bridge",
            f"ip addr add {NODE_IP}/24 dev {BRIDGE}",
            f"ip link set {BRIDGE} up",
            # Service IPs: kube-proxy's DNAT rules need a route for the node's own processes.
            f"ip route add {SERVICE_CIDR} dev {BRIDGE}",
            # This namespace's own setting: a pod -> Service -> pod packet is routed back to the bridge.
            "echo 1 > /proc/sys/net/ipv4/ip_forward",
        ]
        for path in PRIVATE_DIRS:
            own = root / path.strip("/").replace("/", "-")
            own.mkdir(parents=True, exist_ok=True)
            lines.append(f"mount --bind {own} {path}")
        for name in KUBELET_SYSCTLS:
            own = sysctls / name.replace("/", ".")
            own.parent.mkdir(parents=True, exist_ok=True)
            own.write_text(Path("/proc/sys", name).read_text())
            lines.append(f"mount --bind {own} /proc/sys/{name}")
        result = subprocess.run([*self._nsenter(), "sh", "-c", "\n".join(lines)], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ServerStartError(f"setting up the node's namespaces failed: {result.stderr.strip()}")
        make_cgroups(self.cgroup_root)

    def _kill_namespace_processes(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while (pids := self.node_pids()) and time.monotonic() < deadline:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)

    # ----- control plane in the namespace ----------------------------------------------------------

    def _launch(self, name: str, args: list[str], *, env: dict[str, str] | None = None, pass_fds: Sequence[int] = ()) -> ManagedProcess:
        binary = args[0] if os.sep in args[0] else str(self.bin_dir / args[0])
        process = ManagedProcess(
            name,
            [*self._nsenter(), binary, *args[1:]],
            self.logs / f"{name}.log",
            die_with_parent=not self.detached,
            cwd=self.state_dir,
            env=env,
            pass_fds=pass_fds,
        )
        process.start()
        self.processes[name] = process
        return process

    def _make_pki(self) -> None:
        super()._make_pki()
        self.ca.issue("kubelet", f"system:node:{NODE_NAME}", ("system:nodes",))
        self.ca.issue(
            "kubelet-serving", f"system:node:{NODE_NAME}", server_names=(NODE_NAME, "localhost"), server_ips=(NODE_IP, "127.0.0.1")
        )
        self.ca.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",))
        self.ca.issue("kube-proxy", "system:kube-proxy")

    def _start_etcd(self) -> None:
        self.etcd_url = "http://127.0.0.1:2379"  # the namespace's own loopback: no port is shared
        process = self._launch("etcd", self._etcd_args(2380))
        process.wait_ready(lambda: self._http_ok_inside(f"{self.etcd_url}/health"), 60, what="healthy")

    def _pick_api_port(self) -> int:
        """A port free on the machine's loopback, held by the relay into the namespace; inside, the
        apiserver listens on the same number, so https://127.0.0.1:<port> is the apiserver on both sides."""
        relay = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        relay.bind(("127.0.0.1", 0))
        relay.listen(128)
        port = relay.getsockname()[1]
        try:
            self._launch(
                "relay",
                [sys.executable, "-m", "hack.testenv.relay", f"--listen-fd={relay.fileno()}", f"--to=127.0.0.1:{port}"],
                env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                pass_fds=(relay.fileno(),),
            )
        finally:
            relay.close()
        return port

    def _apiserver_args(self) -> list[str]:
        pki = self.pki
        replaced = {"--bind-address": "0.0.0.0", "--advertise-address": NODE_IP}
        args = [
            a if a.split("=")[0] not in replaced else f"{a.split('=')[0]}={replaced[a.split('=')[0]]}" for a in super()._apiserver_args()
        ]
        return [
            *args,
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={self.ca.cert}",
            "--kubelet-preferred-address-types=InternalIP",
        ]

    def _wait_healthz(self, process: ManagedProcess, port: int) -> None:
        process.wait_ready(lambda: self._http_ok_inside(f"https://127.0.0.1:{port}/healthz"), 90, "healthy")

    def _http_ok_inside(self, url: str) -> bool:
        # -k: the components' self-signed serving certificates
        return self.in_namespaces("curl", "-fsk", "--max-time", "2", url, timeout=5, check=False).returncode == 0

    # ----- the node --------------------------------------------------------------------------------

    def _node_env(self) -> dict[str, str]:
        # containerd finds containerd-shim-runc-v2 on PATH; runc and iptables are the system's.
        return {**os.environ, "PATH": f"{self.node_bin}{os.pathsep}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

    def _start_containerd(self) -> None:
        base = self.state_dir / "containerd"
        hosts = base / "certs.d" / "_default"
        hosts.mkdir(parents=True, exist_ok=True)
        # Every registry is a dead loopback port: a missing image fails at once, nothing leaves.
        (hosts / "hosts.toml").write_text(
            'server = "http://127.0.0.1:9"\n\n[host."http://127.0.0.1:9"]\n  capabilities = ["pull", "resolve"]\n'
        )
        cni = self.state_dir / "cni"
        (cni / "net.d").mkdir(parents=True, exist_ok=True)
        (cni / "net.d" / "10-heurimentor.conflist").write_text(json.dumps(cni_config(cni / "ipam"), indent=2))
        config = base / "config.toml"
        config.write_text(containerd_config(base, cni / "net.d", archive_image_name(self.node_bin / "pause.oci.tar")))
        process = self._launch("containerd", [str(self.node_bin / "containerd"), f"--config={config}"], env=self._node_env())
        process.wait_ready(self._containerd_serving, 60, what="serving")

    def _containerd_serving(self) -> bool:
        self.ctr("version", timeout=5)
        return True

    def _import_images(self, archives: Sequence[Path]) -> None:
        for archive in archives:
            started = time.monotonic()
            self.ctr("images", "import", str(archive))
            name = archive_image_name(archive)
            if name.startswith("localhost/heurimentor/"):
                self.ctr("images", "tag", "--force", name, published_image_name(name))
            self.timings[f"import {archive.name}"] = time.monotonic() - started

    def _start_kubelet(self) -> None:
        config = self.state_dir / "kubelet.yaml"
        (self.state_dir / "resolv.conf").write_text("")  # pods get the cluster DNS only
        config.write_text(yaml.safe_dump(self._kubelet_config(), sort_keys=False))
        kubeconfig = write_kubeconfig(
            self.state_dir / "kubelet.kubeconfig", self.server, self.ca.cert, self.pki / "kubelet.crt", self.pki / "kubelet.key", "kubelet"
        )
        labels = ",".join(f"{k}={v}" for k, v in self.node_labels.items())
        self._launch(
            "kubelet",
            [
                str(self.node_bin / "kubelet"),
                f"--config={config}",
                f"--kubeconfig={kubeconfig}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                *([f"--node-labels={labels}"] if labels else []),
                "--v=1",
            ],
            env=self._node_env(),
        )

    def _kubelet_config(self) -> dict:
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # This machine: cgroup v1 (1.35+ refuses it unless told), no systemd, swap on.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{self.cgroup_root}",
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "address": NODE_IP,
            "healthzBindAddress": "127.0.0.1",
            "readOnlyPort": 0,
            "tlsCertFile": str(self.pki / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(self.pki / "kubelet-serving.key"),
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True}, "x509": {"clientCAFile": str(self.ca.cert)}},
            "authorization": {"mode": "Webhook"},
            "clusterDNS": [NODE_IP],
            "clusterDomain": CLUSTER_DOMAIN,
            "resolvConf": str(self.state_dir / "resolv.conf"),
            "volumePluginDir": str(self.state_dir / "volume-plugins"),
            # A busy shared disk must not evict the test's pods or collect its imported images.
            "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
            "nodeStatusReportFrequency": "10s",
            "shutdownGracePeriod": "0s",
        }

    def _start_kube_proxy(self) -> None:
        kubeconfig = write_kubeconfig(
            self.state_dir / "kube-proxy.kubeconfig",
            self.server,
            self.ca.cert,
            self.pki / "kube-proxy.crt",
            self.pki / "kube-proxy.key",
            "kube-proxy",
        )
        config = self.state_dir / "kube-proxy.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                    "kind": "KubeProxyConfiguration",
                    "mode": "iptables",
                    "clientConnection": {"kubeconfig": str(kubeconfig)},
                    "hostnameOverride": NODE_NAME,
                    "clusterCIDR": POD_CIDR,
                    "healthzBindAddress": "127.0.0.1:10256",
                    "metricsBindAddress": "127.0.0.1:10249",
                    # Zeros: kube-proxy leaves the machine-wide conntrack sysctls alone.
                    "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
                    "iptables": {"localhostNodePorts": False},
                },
                sort_keys=False,
            )
        )
        self._launch("kube-proxy", [str(self.node_bin / "kube-proxy"), f"--config={config}", "--v=1"], env=self._node_env())

    def _start_dns(self) -> None:
        process = self._launch(
            "clusterdns",
            [sys.executable, "-m", "hack.testenv.clusterdns", f"--kubeconfig={self.kubeconfig}", f"--listen={NODE_IP}:53"],
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        time.sleep(0.5)
        if not process.running():
            raise ServerStartError(f"clusterdns exited\n{log_tail(process.log_path)}")

    def _start_storage(self) -> None:
        """The default StorageClass `hostpath`: claims bind to folders under the state dir."""
        process = self._launch(
            "hostpath-provisioner",
            [
                sys.executable,
                "-m",
                "hack.testenv.hostpath_provisioner",
                f"--kubeconfig={self.kubeconfig}",
                f"--root={self.state_dir / 'volumes'}",
            ],
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        deadline = time.monotonic() + 30
        while self.kubectl("get", "storageclass", "hostpath", check=False).returncode != 0:
            if not process.running() or time.monotonic() > deadline:
                raise ServerStartError(f"hostpath-provisioner did not create its StorageClass\n{log_tail(process.log_path)}")
            time.sleep(0.2)

    def _save_state(self) -> None:
        super()._save_state()
        state = json.loads((self.state_dir / "state.json").read_text())
        state.update(real_node=True, cgroup_root=self.cgroup_root, holder_pid=self.holder.pid if self.holder else None)
        (self.state_dir / "state.json").write_text(json.dumps(state, indent=2))


def _zombie(pid: int) -> bool:
    """Dead but not yet reaped by its parent: nothing left to kill."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def cni_config(ipam_dir: Path) -> dict:
    """The pods' network: a bridge whose gateway address the node set itself (the plugin's
    isGateway would switch on forwarding), no masquerade, routes to the Service range only."""
    return {
        "cniVersion": "1.0.0",
        "name": "heurimentor",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET, "rangeStart": "10.244.0.10", "gateway": NODE_IP}]],
                    "routes": [{"dst": SERVICE_CIDR, "gw": NODE_IP}],
                    "dataDir": str(ipam_dir),
                },
            }
        ],
    }


def containerd_config(base: Path, cni_conf_dir: Path, pause_image: str) -> str:
    """containerd 2.4's config (version 4, what `containerd config default` writes): every path
    under `base` (none of the machine's /etc, /opt or /run), runc with cgroupfs."""
    runc = require_binary("runc", "run `make system-deps`")
    return f"""version = 4
imports = []
root = "{base / "root"}"
state = "{base / "state"}"

[plugins."io.containerd.server.v1.grpc"]
  address = "{base / "containerd.sock"}"
[plugins."io.containerd.server.v1.ttrpc"]
  address = "{base / "containerd.sock.ttrpc"}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{base / "opt"}"
[plugins."io.containerd.nri.v1.nri"]
  disable = true

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins."io.containerd.cri.v1.runtime"]
  # No CAP_SYS_RESOURCE here: a pod's oom_score_adj cannot go below the runtime's own.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  cdi_spec_dirs = []
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        SystemdCgroup = false
        Root = "{base / "runc"}"
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "{cni_conf_dir}"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{pause_image}"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "{base / "certs.d"}"
"""


# ----- make cluster-up REAL_NODE=1: a supervisor process owns the node -------------------------------


def serve(state_dir: Path, image_names: Sequence[str]) -> int:
    """Start a RealNode in `state_dir`, write `ready` (or `failed`), and tear it down on SIGTERM.

    `make cluster-up REAL_NODE=1` runs this detached; `make cluster-down` sends SIGTERM and waits,
    so the same teardown as the tests' (cgroups, namespace processes) runs."""
    stopping = False

    def request_stop(_signum, _frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    node = RealNode(state_dir, images=image_archives(image_names))
    try:
        node.start()
    except ServerStartError as e:
        (state_dir / "failed").write_text(str(e))
        return 1
    (state_dir / "ready").write_text(json.dumps({"server": node.server, "timings": node.timings}))
    try:
        while not stopping:
            signal.pause()
    finally:
        node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(serve(Path(sys.argv[1]), sys.argv[2:]))
