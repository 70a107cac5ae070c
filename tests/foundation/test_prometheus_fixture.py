"""The Prometheus fixture runs Debian's real prometheus: it scrapes named targets and evaluates rule files."""

import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from hack.testenv.prometheus import PrometheusError


@pytest.fixture
def exporter():
    """A tiny /metrics endpoint exporting heurimentor_train_loss=2.5."""
    registry = CollectorRegistry()
    loss = Gauge("heurimentor_train_loss", "training loss", ["job_name"], registry=registry)
    loss.labels(job_name="aquila2-7b").set(2.5)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server API
            body = generate_latest(registry)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_scrapes_named_target_and_evaluates_rules(prometheus, exporter, tmp_path):
    rules = tmp_path / "rules.yml"
    rules.write_text(
        "groups:\n"
        "- name: foundation\n"
        "  rules:\n"
        "  - record: job:heurimentor_train_loss:max\n"
        "    expr: max by (job_name) (heurimentor_train_loss)\n"
        "  - alert: LossTooHigh\n"
        "    expr: heurimentor_train_loss > 2\n"
    )
    check = subprocess.run([prometheus.promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr

    server = prometheus.start(targets=[("trainer", exporter)], rule_files=[rules])
    targets = server.wait_for_scrape("trainer")
    assert [t["scrapeUrl"] for t in targets] == [f"http://{exporter}/metrics"]
    result = server.query('heurimentor_train_loss{job="trainer"}')
    assert [(r["metric"]["job_name"], float(r["value"][1])) for r in result] == [("aquila2-7b", 2.5)]
    recorded = server.wait_for("job:heurimentor_train_loss:max")
    assert float(recorded[0]["value"][1]) == 2.5
    server.stop()


def test_bad_promql_is_reported_with_prometheus_message(prometheus):
    server = prometheus.start()
    with pytest.raises(PrometheusError, match="parse error"):
        server.query("sum(up")
    server.stop()


def test_unreachable_target_fails_wait_with_reason(prometheus):
    server = prometheus.start(targets=[("nothing", "127.0.0.1:1")])
    with pytest.raises(PrometheusError, match="connection refused"):
        server.wait_for_scrape("nothing", timeout=8)
    server.stop()


def test_promtool_rejects_a_broken_rule_file(prometheus, tmp_path):
    rules = tmp_path / "bad.yml"
    rules.write_text("groups:\n- name: g\n  rules:\n  - record: x\n    expr: sum(\n")
    check = subprocess.run([prometheus.promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert check.returncode != 0
    assert "parse error" in (check.stdout + check.stderr)
