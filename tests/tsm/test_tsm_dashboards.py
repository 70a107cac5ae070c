"""Dashboards and alert rules against real Prometheus: promtool accepts and unit-tests the rules, and every
dashboard panel's PromQL parses and returns data from a real TSM (uvicorn) fed by a short run."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from heurimentor.contracts.metrics import MetricBatch
from tests.tsm.testlib import auth, serve_app, tsm_settings
from tsm_service.api.main import create_app
from tsm_service.migrations import upgrade

CHART = Path(__file__).resolve().parents[2] / "charts" / "heurimentor"
RULES = CHART / "rules" / "tsm-alerts.yaml"
DASHBOARDS = sorted((CHART / "dashboards").glob("tsm-*.json"))
JOB = "aquila2-7b-demo"


def _panel_queries() -> list[tuple[str, str, str]]:
    queries = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                queries.append((path.name, panel["title"], target["expr"]))
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                queries.append((path.name, f"variable {variable['name']}", variable["definition"]))
    return queries


def test_dashboards_are_well_formed():
    assert [p.name for p in DASHBOARDS] == ["tsm-job.json", "tsm-platform.json"]
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        assert all(panel["targets"] for panel in dashboard["panels"]), f"{path.name}: a panel without a query"


def test_promtool_checks_and_unit_tests_the_rules(prometheus, tmp_path):
    check = subprocess.run([prometheus.promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 10 rules found" in check.stdout
    cases = tmp_path / "rules_test.yaml"
    cases.write_text(f"rule_files: [{RULES}]\n" + (Path(__file__).parent / "rules_test.yaml").read_text())
    unit = subprocess.run([prometheus.promtool, "test", "rules", str(cases)], capture_output=True, text=True)
    assert unit.returncode == 0, unit.stdout + unit.stderr


def _short_run() -> list[str]:
    """Two ranks, 60 steps, everything a dashboard shows (rank 1 is slow: a straggler)."""
    now = time.time()
    points, evals = [], []
    for step in range(60):
        for rank in range(2):
            point = {
                "step": step,
                "rank": rank,
                "time": now - 60 + step,
                "tokens_seen": step * 8192,
                "mixture_version": 1,
                "scalars": {"step_time_seconds": 1.0 if rank == 0 else 1.8, "tokens_per_second": 4096.0},
            }
            if rank == 0:
                point["scalars"].update(loss=4.0 - step / 30, grad_norm=1.0, lr=3e-4, mfu=0.41, global_tokens_per_second=8192.0)
                point["source_losses"] = {"web-en": 4.1 - step / 30, "code": 3.0 - step / 40}
            points.append(point)
        if step % 20 == 19:
            evals += [{"step": step, "kind": "val_loss", "name": s, "value": 3.5, "time": now} for s in ("web-en", "code")]
    return [
        MetricBatch.model_validate({"batch_id": f"r{i}", "points": points[i::2], "evals": evals if i == 0 else []}).model_dump_json()
        for i in range(2)
    ]


@pytest.fixture
def fed_tsm(postgres_url):
    upgrade(postgres_url)
    app = create_app(tsm_settings(postgres_url))
    with serve_app(app) as url:
        for body in _short_run():
            response = httpx.post(f"{url}/v1/jobs/{JOB}/metrics", content=body, headers={"Content-Type": "application/json", **auth()})
            assert response.status_code == 200, response.text
        assert httpx.post(f"{url}/v1/jobs/{JOB}/evaluate", headers=auth()).status_code == 200
        yield url


def test_metrics_follow_the_naming_guide(fed_tsm):
    families = list(text_string_to_metric_families(httpx.get(f"{fed_tsm}/metrics").text))
    assert families
    for family in families:
        assert family.name.startswith("heurimentor_tsm_"), family.name
        for sample in family.samples:
            assert set(sample.labels) <= {"job_name", "source", "kind", "result"}, sample
            if family.type == "counter":
                assert sample.name.endswith("_total"), sample.name
            else:
                assert not sample.name.endswith("_total"), sample.name
    names = {f.name for f in families}
    for expected in (
        "heurimentor_tsm_job_loss",
        "heurimentor_tsm_job_source_loss",
        "heurimentor_tsm_job_mfu_ratio",
        "heurimentor_tsm_job_throughput_tokens_per_second",
        "heurimentor_tsm_job_grad_norm",
        "heurimentor_tsm_job_step_time_skew_ratio",
        "heurimentor_tsm_job_mixture_version",
        "heurimentor_tsm_loss_spikes",
        "heurimentor_tsm_rollback_recommendations",
        "heurimentor_tsm_mixture_updates",
    ):
        assert expected in names, expected


def test_every_panel_query_returns_data_from_a_real_scrape(prometheus, fed_tsm):
    address = fed_tsm.removeprefix("http://")
    server = prometheus.start(targets=[("heurimentor-tsm", address)], rule_files=[RULES])
    server.wait_for_scrape("heurimentor-tsm")
    server.wait_for("count_over_time(heurimentor_tsm_job_step[1m]) >= 3")  # rate() and increase() need samples
    assert {g["name"] for g in server.rules()} == {"heurimentor-tsm-recording", "heurimentor-tsm-alerts"}
    assert all(r["health"] == "ok" for g in server.rules() for r in g["rules"])

    empty = []
    for dashboard, title, expr in _panel_queries():
        promql = expr.replace("$job_name", JOB)
        match = re.fullmatch(r"label_values\((\w+), (\w+)\)", promql)
        if match:  # a Grafana variable: the series must carry the label
            result = server.query(match.group(1))
            values = {r["metric"].get(match.group(2)) for r in result}
            assert JOB in values, f"{dashboard} {title}: {values}"
            continue
        if not server.query(promql):  # raises PrometheusError with the parse error for bad PromQL
            empty.append(f"{dashboard} / {title}: {promql}")
    assert empty == [], "panels without data:\n" + "\n".join(empty)
    skew = server.query(f'heurimentor_tsm_job_step_time_skew_ratio{{job_name="{JOB}"}}')
    assert float(skew[0]["value"][1]) == pytest.approx(1.8 / 1.4)  # slowest rank over the median of (1.0, 1.8)
    server.stop()
