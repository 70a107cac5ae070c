"""Child processes for the test servers: logs to a file, readiness polling, clean stop, log tails in errors."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class ServerStartError(RuntimeError):
    """A test server did not come up; the message carries the tail of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def retry_port_clash(launch: Callable[[], T], attempts: int = 3) -> T:
    """Run `launch` (which picks fresh ports) again when a server lost its port to another process
    between free_port() and bind: several engineers' test sessions share this machine's loopback."""
    for attempt in range(attempts):
        try:
            return launch()
        except ServerStartError as e:
            if attempt == attempts - 1 or "address already in use" not in str(e).lower():
                raise
    raise AssertionError("unreachable")


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    tail = text.splitlines()[-lines:]
    return f"--- last {len(tail)} lines of {path} ---\n" + "\n".join(tail)


def unprivileged_user() -> str | None:
    """The account to drop to when running as root (PostgreSQL refuses root), else None."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise ServerStartError("running as root but neither a 'postgres' nor a 'nobody' account exists")


def chown_tree(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def require_binary(name: str, hint: str) -> str:
    found = shutil.which(name) if os.sep not in name else (name if os.access(name, os.X_OK) else None)
    if not found:
        raise ServerStartError(f"{name} not found; {hint}")
    return found


class ManagedProcess:
    """One long-running server process whose stdout+stderr go to `log_path`.

    `die_with_parent` (the default, for pytest sessions) asks the kernel to SIGTERM the server
    if the Python process dies without tearing down; detached servers (`make cluster-up`) start
    their own session instead and are stopped by pid.
    """

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
        die_with_parent: bool = True,
        stop_signal: signal.Signals = signal.SIGTERM,
        pass_fds: Sequence[int] = (),
    ) -> None:
        self.name = name
        self.args = list(args)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.user = user
        self.die_with_parent = die_with_parent
        self.stop_signal = stop_signal
        self.pass_fds = tuple(pass_fds)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        prefix: list[str] = []
        if self.user or self.die_with_parent:
            prefix = ["setpriv"]
            if self.die_with_parent:
                prefix += ["--pdeathsig", "TERM"]
            if self.user:
                prefix += ["--reuid", self.user, "--regid", self.user, "--init-groups"]
            prefix.append("--")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                prefix + self.args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=not self.die_with_parent,
                pass_fds=self.pass_fds,
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, probe: Callable[[], bool], timeout: float, what: str = "ready") -> None:
        """Poll `probe` until it returns True; fail with the log tail if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        last_error: BaseException | None = None
        while time.monotonic() < deadline:
            if not self.running():
                code = self.proc.returncode if self.proc else None
                raise ServerStartError(f"{self.name} exited with code {code} before it was {what}\n{log_tail(self.log_path)}")
            try:
                if probe():
                    return
            except Exception as e:  # noqa: BLE001 - a probe failing is the normal "not yet"
                last_error = e
            time.sleep(0.2)
        self.stop()
        raise ServerStartError(
            f"{self.name} was not {what} after {timeout:.0f}s (last probe error: {last_error!r})\n{log_tail(self.log_path)}"
        )

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(self.stop_signal)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def http_ok(url: str, *, context=None, timeout: float = 2.0) -> bool:
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:  # noqa: S310 - loopback only
        return 200 <= resp.status < 300
