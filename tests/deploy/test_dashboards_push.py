"""`heurimentor dashboards push` through grafana-client against a recorded Grafana API on loopback.

No Grafana server can run here (its server is AGPL and on no package registry this machine reaches),
so a small HTTP server plays back the dashboard API as Grafana documents it (POST /api/dashboards/db
with its success, 401 and 412 answers; GET /api/dashboards/uid/<uid>), keeping what it was sent. The
dashboards' PromQL is proven against the real Prometheus in tests/tsm/test_tsm_dashboards.py.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from heurimentor.cli import app
from heurimentor.dashboards import DASHBOARDS_DIR, load_dashboards

TOKEN = "glsa_recorded_service_account_token"


class RecordedGrafana(BaseHTTPRequestHandler):
    dashboards: dict[str, dict] = {}
    requests: list[tuple[str, str, str]] = []

    def log_message(self, *_: object) -> None:
        pass

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        self.requests.append((self.command, self.path, self.headers.get("Authorization", "")))
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._answer(401, {"message": "Unauthorized"})
            return False
        return True

    def do_POST(self) -> None:
        if not self._authorized():
            return
        if self.path != "/api/dashboards/db":
            return self._answer(404, {"message": "Not found"})
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        dashboard = body["dashboard"]
        uid = dashboard.get("uid")
        stored = self.dashboards.get(uid)
        if stored and not body.get("overwrite"):
            return self._answer(412, {"message": "The dashboard has been changed by someone else", "status": "version-mismatch"})
        version = stored["version"] + 1 if stored else 1
        dashboard_id = stored["id"] if stored else len(self.dashboards) + 1
        self.dashboards[uid] = {**dashboard, "id": dashboard_id, "version": version, "folderUid": body.get("folderUid", "")}
        slug = re.sub(r"[^a-z0-9]+", "-", dashboard.get("title", "").lower()).strip("-")
        self._answer(
            200, {"id": dashboard_id, "uid": uid, "url": f"/d/{uid}/{slug}", "status": "success", "version": version, "slug": slug}
        )

    def do_GET(self) -> None:
        if not self._authorized():
            return
        uid = self.path.removeprefix("/api/dashboards/uid/")
        if uid not in self.dashboards:
            return self._answer(404, {"message": "Dashboard not found"})
        self._answer(200, {"dashboard": self.dashboards[uid], "meta": {"version": self.dashboards[uid]["version"]}})


@pytest.fixture
def grafana() -> Iterator[str]:
    RecordedGrafana.dashboards, RecordedGrafana.requests = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), RecordedGrafana)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_push_creates_then_updates_in_place_by_uid(grafana):
    shipped = {d["uid"]: d for d in load_dashboards(DASHBOARDS_DIR)}
    assert len(shipped) == 2
    first = CliRunner().invoke(app, ["dashboards", "push", "--url", grafana, "--token", TOKEN, "--folder-uid", "training"])
    assert first.exit_code == 0, first.output
    assert {uid: d["version"] for uid, d in RecordedGrafana.dashboards.items()} == dict.fromkeys(shipped, 1)
    second = CliRunner().invoke(app, ["dashboards", "push", "--url", grafana, "--token", TOKEN, "--folder-uid", "training"])
    assert second.exit_code == 0, second.output
    # Same uids, same ids, version 2: updated in place, no copies.
    assert {uid: (d["id"], d["version"]) for uid, d in RecordedGrafana.dashboards.items()} == {
        uid: (i + 1, 2) for i, uid in enumerate(shipped)
    }
    for uid, dashboard in RecordedGrafana.dashboards.items():
        assert dashboard["title"] == shipped[uid]["title"] and dashboard["panels"] == shipped[uid]["panels"]
        assert dashboard["folderUid"] == "training"
    assert "version 2" in second.output and all(uid in second.output for uid in shipped)
    assert {path for _, path, _ in RecordedGrafana.requests} == {"/api/dashboards/db"}


def test_a_wrong_token_fails_with_grafanas_reason(grafana):
    out = CliRunner().invoke(app, ["dashboards", "push", "--url", grafana, "--token", "wrong"])
    assert out.exit_code == 1
    assert "refused dashboard" in out.output and "Unauthorized" in out.output
    assert RecordedGrafana.dashboards == {}


def test_a_dashboard_without_uid_is_refused_before_any_request(grafana, tmp_path: Path):
    (tmp_path / "nouid.json").write_text(json.dumps({"title": "no uid", "panels": []}))
    out = CliRunner().invoke(app, ["dashboards", "push", "--url", grafana, "--token", TOKEN, "--dir", str(tmp_path)])
    assert out.exit_code == 1 and "needs a top-level 'uid'" in out.output
    assert RecordedGrafana.requests == []
