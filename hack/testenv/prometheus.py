"""Real Prometheus servers (Debian's `prometheus` package) scraping the targets a test names."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from hack.testenv.procs import ManagedProcess, ServerStartError, free_port, http_ok, require_binary, retry_port_clash

Target = tuple[str, str] | tuple[str, str, str]  # (job, "host:port") or (job, "host:port", metrics_path)
_HINT = "run `make system-deps` (installs Debian's prometheus package)"


class PrometheusError(RuntimeError):
    """A query or scrape wait failed; the message says which and why."""


class PrometheusServer:
    """One running Prometheus. `query(promql)` returns the `data.result` list of an instant query."""

    def __init__(self, base_dir: Path, config: dict[str, Any], binary: str, promtool: str) -> None:
        self.base_dir = base_dir
        self.config_path = base_dir / "prometheus.yml"
        self.log_path = base_dir / "prometheus.log"
        self.config = config
        self.binary = binary
        self.promtool = promtool
        self.port = 0
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> PrometheusServer:
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        check = subprocess.run([self.promtool, "check", "config", str(self.config_path)], capture_output=True, text=True, check=False)
        if check.returncode != 0:
            raise ServerStartError(f"promtool rejected {self.config_path}:\n{check.stdout}{check.stderr}")
        retry_port_clash(lambda: self._launch(timeout))
        return self

    def _launch(self, timeout: float) -> None:
        self.port = free_port()
        self.process = ManagedProcess(
            "prometheus",
            [
                self.binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.base_dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=1h",
            ],
            self.log_path,
            cwd=self.base_dir,
        )
        self.process.start()
        self.process.wait_ready(lambda: http_ok(f"{self.url}/-/ready"), timeout, what="ready")

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; returns `data`, raising PrometheusError with Prometheus' own error text."""
        query = urllib.parse.urlencode(params)
        url = f"{self.url}/api/v1/{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback only
                body = json.load(resp)
        except urllib.error.HTTPError as e:
            body = json.loads(e.read() or b"{}")
            raise PrometheusError(f"GET {url}: HTTP {e.code}: {body.get('error', body)}") from e
        if body.get("status") != "success":
            raise PrometheusError(f"GET {url}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        return self.api("query", query=promql)["result"]

    def targets(self, job: str | None = None) -> list[dict[str, Any]]:
        active = self.api("targets", state="active")["activeTargets"]
        return [t for t in active if job is None or t["labels"].get("job") == job]

    def rules(self) -> list[dict[str, Any]]:
        return self.api("rules")["groups"]

    def alerts(self) -> list[dict[str, Any]]:
        return self.api("alerts")["alerts"]

    def wait_for_scrape(self, job: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until every target of `job` has been scraped successfully; returns the targets."""
        deadline = time.monotonic() + timeout
        targets: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            targets = self.targets(job)
            if targets and all(t["health"] == "up" for t in targets):
                return targets
            time.sleep(0.25)
        states = [(t["scrapeUrl"], t["health"], t.get("lastError")) for t in targets] or "no such job"
        raise PrometheusError(f"job {job!r} not scraped successfully within {timeout:.0f}s: {states}")

    def wait_for(self, promql: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until an instant query returns a non-empty result (e.g. a recording rule evaluated)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(promql)
            if result:
                return result
            time.sleep(0.25)
        raise PrometheusError(f"query {promql!r} still empty after {timeout:.0f}s")

    def stop(self, keep_logs: bool = False) -> None:
        if self.process:
            self.process.stop()
        if keep_logs:
            shutil.rmtree(self.base_dir / "data", ignore_errors=True)
        else:
            shutil.rmtree(self.base_dir, ignore_errors=True)


class PrometheusFactory:
    """Starts Prometheus servers on demand; `stop_all()` at the end of the test session."""

    def __init__(self, base_dir: Path | None = None) -> None:
        self.binary = require_binary("prometheus", _HINT)
        self.promtool = require_binary("promtool", _HINT)
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="heurimentor-prom-"))
        self.servers: list[PrometheusServer] = []

    def start(
        self,
        targets: Iterable[Target] = (),
        rule_files: Sequence[str | Path] = (),
        *,
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        timeout: float = 60.0,
    ) -> PrometheusServer:
        jobs: dict[str, dict[str, Any]] = {}
        for target in targets:
            job, address, *rest = target
            metrics_path = rest[0] if rest else "/metrics"
            scrape = jobs.setdefault(
                f"{job}\0{metrics_path}",
                {"job_name": job, "metrics_path": metrics_path, "static_configs": [{"targets": []}]},
            )
            scrape["static_configs"][0]["targets"].append(address)
        names = [j["job_name"] for j in jobs.values()]
        if len(names) != len(set(names)):
            raise ValueError(f"one job name per metrics_path please: {names}")
        missing = [str(p) for p in rule_files if not Path(p).is_file()]
        if missing:
            raise FileNotFoundError(f"rule files not found: {missing}")
        config = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval, "scrape_timeout": scrape_interval},
            "rule_files": [str(Path(p).resolve()) for p in rule_files],
            "scrape_configs": list(jobs.values()),
        }
        server_dir = Path(tempfile.mkdtemp(prefix=f"{len(self.servers)}-", dir=self.base_dir))
        server = PrometheusServer(server_dir, config, self.binary, self.promtool)
        server.start(timeout)
        self.servers.append(server)
        return server

    def stop_all(self, keep_logs: bool = False) -> None:
        for server in self.servers:
            server.stop(keep_logs)
        self.servers.clear()
        if not keep_logs:
            shutil.rmtree(self.base_dir, ignore_errors=True)
