"""Run the images `make images` built, with runc, for the image tests (no Docker engine here).

- ``NetworkNamespace``: a network namespace the test creates (`ip netns add`), loopback up, nothing
  else: containers in it reach each other on 127.0.0.1 and nothing outside.
- ``UnixRelay``: a TCP port inside such a namespace that forwards, through a Unix socket (the
  filesystem is shared), to a TCP port on this machine's loopback: how a container reaches the
  test's apiserver without any interface or route.
- ``Container``: one runc container from an image in buildah's local storage (vfs), read-only root
  filesystem (the image's top layer directory, which under vfs holds the whole tree), non-root
  user, tmpfs /tmp, optional bind mounts and /etc/hosts entries, in a given network namespace.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO

STORAGE = Path("/var/lib/containers/storage")


def image_rootfs(image: str) -> Path:
    """The directory holding ``image``'s complete tree in buildah's vfs storage."""
    out = subprocess.run(
        ["buildah", "--storage-driver", "vfs", "inspect", "--type", "image", "--format", "{{.FromImageID}}", image],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"image {image} is not in buildah's storage (run `make images`): {out.stderr.strip()}")
    image_id = out.stdout.strip()
    images = json.loads((STORAGE / "vfs-images" / "images.json").read_text())
    layer = next(i["layer"] for i in images if i["id"] == image_id)
    return STORAGE / "vfs" / "dir" / layer


def image_config(image: str) -> dict:
    out = subprocess.run(
        ["buildah", "--storage-driver", "vfs", "inspect", "--type", "image", image], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)["OCIv1"]["config"]


class NetworkNamespace:
    def __init__(self) -> None:
        self.name = f"hm-test-{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)
        self.path = Path("/run/netns") / self.name

    def run(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], **kwargs)

    def popen(self, argv: list[str], **kwargs) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.name, *argv], **kwargs)

    def close(self) -> None:
        subprocess.run(["ip", "netns", "delete", self.name], check=False)


_RELAY = r"""
import asyncio, sys
mode, a, b = sys.argv[1:4]
async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data); await w.drain()
    finally:
        w.close()
async def handle(r, w):
    if mode == "unix-to-tcp":
        ur, uw = await asyncio.open_connection("127.0.0.1", int(b))
    else:
        ur, uw = await asyncio.open_unix_connection(b)
    await asyncio.gather(pipe(r, uw), pipe(ur, w), return_exceptions=True)
async def main():
    if mode == "unix-to-tcp":
        server = await asyncio.start_unix_server(handle, a)
    else:
        server = await asyncio.start_server(handle, "127.0.0.1", int(a))
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


class UnixRelay:
    """127.0.0.1:``inner_port`` inside ``netns`` -> a Unix socket -> 127.0.0.1:``outer_port`` here."""

    def __init__(self, netns: NetworkNamespace, *, inner_port: int, outer_port: int, workdir: Path) -> None:
        sock = workdir / f"relay-{outer_port}.sock"
        self.processes = [
            subprocess.Popen([sys.executable, "-c", _RELAY, "unix-to-tcp", str(sock), str(outer_port)], stdout=subprocess.PIPE, text=True),
        ]
        self._ready(self.processes[0])
        self.processes.append(
            netns.popen([sys.executable, "-c", _RELAY, "tcp-to-unix", str(inner_port), str(sock)], stdout=subprocess.PIPE, text=True)
        )
        self._ready(self.processes[1])

    @staticmethod
    def _ready(process: subprocess.Popen) -> None:
        line = process.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"relay did not start (exit {process.poll()})")

    def close(self) -> None:
        for p in self.processes:
            p.terminate()
            p.wait(timeout=10)


class Container:
    """One runc container; ``start()`` runs it in the background, ``run()`` to completion."""

    def __init__(
        self,
        image: str,
        args: list[str] | None = None,
        *,
        netns: NetworkNamespace,
        env: dict[str, str] | None = None,
        binds: dict[Path, str] | None = None,
        hosts: dict[str, str] | None = None,
        user: str = "10001:10001",
        entrypoint: list[str] | None = None,
        workdir: Path,
        name: str = "c",
    ) -> None:
        config = image_config(image)
        self.id = f"hm-{name}-{uuid.uuid4().hex[:6]}"
        self.bundle = Path(tempfile.mkdtemp(prefix=f"{self.id}-", dir=workdir))
        self.state = workdir / "runc-state"
        # As Kubernetes composes them: command replaces ENTRYPOINT, args replace CMD.
        argv = (entrypoint if entrypoint is not None else config.get("Entrypoint") or []) + (
            args if args is not None else (config.get("Cmd") or [])
        )
        image_env = dict(e.split("=", 1) for e in config.get("Env") or [])
        uid, gid = (int(x) for x in user.split(":"))
        mounts = [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
            },
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=1g"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]},
        ]
        hosts_file = self.bundle / "hosts"
        hosts_file.write_text("127.0.0.1 localhost\n" + "".join(f"{ip} {host}\n" for host, ip in (hosts or {}).items()))
        mounts.append({"destination": "/etc/hosts", "type": "bind", "source": str(hosts_file), "options": ["rbind", "ro"]})
        for source, destination in (binds or {}).items():
            mounts.append({"destination": destination, "type": "bind", "source": str(source), "options": ["rbind", "rw"]})
        spec = {
            "ociVersion": "1.0.2",
            "process": {
                "terminal": False,
                "user": {"uid": uid, "gid": gid},
                "args": argv,
                "env": [f"{k}={v}" for k, v in {**image_env, **(env or {})}.items()],
                "cwd": config.get("WorkingDir") or "/",
                "noNewPrivileges": True,
                "capabilities": {k: [] for k in ("bounding", "effective", "inheritable", "permitted", "ambient")},
            },
            "root": {"path": str(image_rootfs(image)), "readonly": True},
            "hostname": name,
            "mounts": mounts,
            "linux": {
                "namespaces": [
                    {"type": "pid"},
                    {"type": "ipc"},
                    {"type": "uts"},
                    {"type": "mount"},
                    {"type": "network", "path": str(netns.path)},
                ],
                "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
                "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
            },
        }
        (self.bundle / "config.json").write_text(json.dumps(spec))
        self.log_path = workdir / f"{self.id}.log"
        self.process: subprocess.Popen | None = None
        self._log: IO | None = None

    def _runc(self) -> list[str]:
        return ["runc", "--root", str(self.state), "run", "--bundle", str(self.bundle), self.id]

    def run(self, timeout: float = 120) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(self._runc(), capture_output=True, text=True, timeout=timeout)
        finally:
            self._delete()

    def start(self) -> Container:
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(self._runc(), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def logs(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, sig: str = "KILL") -> None:
        subprocess.run(["runc", "--root", str(self.state), "kill", self.id, sig], capture_output=True)

    def stop(self, timeout: float = 15) -> None:
        if self.running():
            self.kill("TERM")
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill("KILL")
                self.process.wait(timeout=10)
        self._delete()
        if self._log:
            self._log.close()

    def _delete(self) -> None:
        subprocess.run(["runc", "--root", str(self.state), "delete", "--force", self.id], capture_output=True)
        shutil.rmtree(self.bundle, ignore_errors=True)


def wait_http(
    netns: NetworkNamespace, url: str, *, timeout: float = 60, container: Container | None = None, token: str | None = None
) -> tuple[int, str]:
    """GET ``url`` from inside ``netns`` until it answers 200; (status, body) of the last try."""
    probe = (
        "import sys, urllib.request, urllib.error\n"
        "req = urllib.request.Request(sys.argv[1], headers={'Authorization': 'Bearer ' + sys.argv[2]} if len(sys.argv) > 2 else {})\n"
        "try:\n r = urllib.request.urlopen(req, timeout=5); print(r.status); print(r.read().decode())\n"
        "except urllib.error.HTTPError as e: print(e.code); print(e.read().decode())\n"
        "except Exception as e: print(0); print(e)\n"
    )
    deadline = time.monotonic() + timeout
    status, body = 0, ""
    while time.monotonic() < deadline:
        out = netns.run([sys.executable, "-c", probe, url, *([token] if token else [])], capture_output=True, text=True, timeout=30)
        status_line, _, body = out.stdout.partition("\n")
        status = int(status_line or 0)
        if status == 200 or status in (401, 403):  # an answer; refusals are for the caller to judge
            return status, body
        if container is not None and not container.running():
            break
        time.sleep(0.5)
    return status, body
