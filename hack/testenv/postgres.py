"""A throwaway PostgreSQL cluster from the Debian binaries: initdb in a temp dir, loopback TCP, trust auth."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from hack.testenv.procs import (
    ManagedProcess,
    ServerStartError,
    chown_tree,
    free_port,
    log_tail,
    retry_port_clash,
    unprivileged_user,
)

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "postgres"
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# Throwaway data: durability settings off, so CREATE DATABASE and commits are cheap.
_SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "64MB",
    "log_min_messages": "warning",
}


class PostgresServer:
    """`start()` runs initdb + postgres; `create_database(name)` returns a SQLAlchemy URL for a new database."""

    def __init__(self, base_dir: Path | None = None) -> None:
        # /tmp, not pytest's 0700 tmp dir: the server runs as an unprivileged account when we are root.
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="heurimentor-pg-"))
        self.data_dir = self.base_dir / "data"
        self.log_path = self.base_dir / "postgres.log"
        self.user = unprivileged_user()
        self.port = 0
        self.process: ManagedProcess | None = None

    def _binary(self, name: str) -> str:
        path = PG_BIN / name
        if not os.access(path, os.X_OK):
            raise ServerStartError(f"{path} missing: run `make system-deps` (installs postgresql-15)")
        return str(path)

    def start(self, timeout: float = 60.0) -> PostgresServer:
        initdb = self._binary("initdb")
        postgres = self._binary("postgres")
        self.base_dir.chmod(0o755)
        self.data_dir.mkdir(mode=0o700)
        if self.user:
            chown_tree(self.base_dir, self.user)
        init = ManagedProcess(
            "initdb",
            [initdb, "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
            self.base_dir / "initdb.log",
            user=self.user,
        )
        init.start()
        if init.proc.wait(120) != 0:
            raise ServerStartError(f"initdb failed (exit {init.proc.returncode})\n{log_tail(init.log_path)}")
        retry_port_clash(lambda: self._launch(postgres, timeout))
        return self

    def _launch(self, postgres: str, timeout: float) -> None:
        self.port = free_port()
        settings = {**_SERVER_SETTINGS, "port": str(self.port), "unix_socket_directories": str(self.base_dir)}
        args = [postgres, "-D", str(self.data_dir)]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        # SIGINT is PostgreSQL's "fast" shutdown: it does not wait for clients to disconnect.
        self.process = ManagedProcess("postgres", args, self.log_path, user=self.user, stop_signal=signal.SIGINT)
        self.process.start()
        self.process.wait_ready(self._accepts_connections, timeout, what="accepting connections")

    def _accepts_connections(self) -> bool:
        ready = subprocess.run(
            [self._binary("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-q"],
            check=False,
        )
        return ready.returncode == 0

    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _admin_execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(driver="postgresql"), autocommit=True) as conn:
            conn.execute(sql)

    def create_database(self, name: str) -> str:
        if not _DB_NAME.match(name):
            raise ValueError(f"database name {name!r} must match {_DB_NAME.pattern}")
        self._admin_execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        if not _DB_NAME.match(name):
            raise ValueError(f"database name {name!r} must match {_DB_NAME.pattern}")
        self._admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self, keep_logs: bool = False) -> None:
        """Stop the server (fast shutdown, then SIGKILL) and remove its files unless asked to keep them."""
        if self.process:
            self.process.stop()
        if keep_logs:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        else:
            shutil.rmtree(self.base_dir, ignore_errors=True)
