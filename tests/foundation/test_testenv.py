"""The server launchers fail loudly with the server's own words, and survive a port taken under them."""

from __future__ import annotations

import socket

import pytest

from hack.testenv import postgres as pg_module
from hack.testenv.postgres import PostgresServer
from hack.testenv.procs import ServerStartError


def test_postgres_retries_when_its_port_is_taken(monkeypatch):
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    ports = iter([taken])
    real_free_port = pg_module.free_port
    monkeypatch.setattr(pg_module, "free_port", lambda: next(ports, None) or real_free_port())
    server = PostgresServer()
    try:
        server.start()
        assert server.port != taken
        assert "Address already in use" in server.log_path.read_text()
        assert server.process.running()
    finally:
        server.stop()
        squatter.close()


def test_missing_postgres_binaries_fail_with_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(pg_module, "PG_BIN", tmp_path / "no-such-bin")
    server = PostgresServer(tmp_path / "pg")
    with pytest.raises(ServerStartError, match="make system-deps"):
        server.start()


def test_postgres_that_cannot_start_reports_its_log(tmp_path):
    server = PostgresServer()
    try:
        server.start()
        # A second postmaster on the same data directory is refused; the error carries PostgreSQL's reason.
        clone = PostgresServer(server.base_dir)
        clone.data_dir = server.data_dir
        clone.log_path = server.base_dir / "clone.log"
        with pytest.raises(ServerStartError, match="lock file .*postmaster.pid.* already exists"):
            clone._launch(pg_module.PG_BIN.joinpath("postgres").as_posix(), timeout=30)
    finally:
        server.stop()


def test_prometheus_refuses_a_broken_rule_file(prometheus, tmp_path):
    rules = tmp_path / "bad.yml"
    rules.write_text("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: rate(x[5m]\n")
    with pytest.raises(ServerStartError, match="promtool rejected"):
        prometheus.start(rule_files=[rules])
