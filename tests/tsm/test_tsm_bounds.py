"""Issue 11's defects on the TSM: bad input is a 4xx with a reason, never a 500, and no per-job
setting can switch detection off. On PostgreSQL (int4/int8 columns, no NUL) and SQLite where the
database matters."""

from __future__ import annotations

import json
import socket
import uuid

import pytest
from fastapi import FastAPI

from heurimentor.contracts.bounds import INT32_MAX, INT64_MAX
from heurimentor.service_kit.errors import install_error_handling
from tests.tsm.testlib import auth, point, send, serve_app


def _post_raw(client, job: str, body: bytes | str):
    return client.post(f"/v1/jobs/{job}/metrics", content=body, headers={"Content-Type": "application/json"})


def _batch(points: list[dict], **extra) -> str:
    return json.dumps({"batch_id": uuid.uuid4().hex, "points": points, **extra})


def _assert_422_list(response) -> list[dict]:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail and all({"loc", "msg", "type"} <= d.keys() for d in detail), detail
    return detail


def test_a_step_past_int4_is_stored_and_one_past_int8_is_a_422(pg_tsm):
    big = 2**31 + 5  # was a 500 on PostgreSQL (int4 columns)
    response = send(pg_tsm, "big-steps", [point(big, loss=2.0, grad_norm=1.0), point(big + 1, loss=1.9)])
    assert response.status_code == 200, response.text
    response = _post_raw(pg_tsm, "big-steps", _batch([{**point(big + 2, loss=1.8), "mixture_version": 2**40, "tokens_seen": INT64_MAX}]))
    assert response.status_code == 200, response.text
    curve = pg_tsm.get("/v1/jobs/big-steps/curves/scalar/loss").json()
    assert [p["step"] for p in curve["points"]] == [big, big + 1, big + 2]
    job = pg_tsm.get("/v1/jobs/big-steps").json()
    assert job["last_step"] == big + 2 and job["mixture_version"] == 2**40 and job["tokens_seen"] == INT64_MAX
    assert pg_tsm.post("/v1/jobs/big-steps/evaluate").status_code == 200  # the detectors read bigint steps

    for bad in (
        {"step": INT64_MAX + 1},
        {"rank": INT32_MAX + 1},
        {"tokens_seen": INT64_MAX + 1},
        {"mixture_version": INT64_MAX + 1},
        {"step": -1},
    ):
        detail = _assert_422_list(_post_raw(pg_tsm, "big-steps", _batch([{**point(1, loss=1.0), **bad}])))
        assert detail[0]["loc"][:3] == ["points", 0, next(iter(bad))]
    _assert_422_list(_post_raw(pg_tsm, "big-steps", _batch([], completed_step=INT64_MAX + 1)))
    # Query parameters are bounded the same way (2**63 reached the database as a bind parameter).
    _assert_422_list(pg_tsm.get("/v1/jobs/big-steps/curves/scalar/loss", params={"step_min": INT64_MAX + 1}))
    _assert_422_list(pg_tsm.get("/v1/jobs/big-steps/curves/scalar/loss", params={"rank": INT32_MAX + 1}))
    _assert_422_list(pg_tsm.get("/v1/jobs/big-steps/events", params={"since_id": INT32_MAX + 1}))
    _assert_422_list(pg_tsm.patch(f"/v1/jobs/big-steps/rollbacks/{INT32_MAX + 1}", json={"status": "dismissed"}))


@pytest.mark.parametrize("name", ["lo\x00ss", "lo\ud800ss", "x" * 201, ""])
def test_unstorable_metric_names_are_a_422(pg_tsm, name):
    # NUL cannot be stored by PostgreSQL (was a 500), a lone surrogate has no UTF-8 encoding,
    # 201 characters exceed the series name column.
    assert send(pg_tsm, "names", [point(1, loss=1.0)]).status_code == 200
    body = json.dumps({"batch_id": "b1", "points": [{**point(2), "scalars": {name: 1.0}}]})
    _assert_422_list(_post_raw(pg_tsm, "names", body))
    _assert_422_list(pg_tsm.get("/v1/jobs/names/curves/scalar/" + ("a%00b" if "\x00" in name else "a" * 201)))


def test_nan_time_and_a_non_utf8_body_are_a_422(any_tsm):
    # A metric time of "NaN" was a 500 on SQLite (NaN is stored as NULL there); a body that is not
    # UTF-8 was a 500 while rendering its validation error.
    _assert_422_list(_post_raw(any_tsm, "times", _batch([{**point(1, loss=1.0), "time": "NaN"}])))
    _assert_422_list(_post_raw(any_tsm, "times", _batch([{**point(1, loss=1.0), "time": "Infinity"}])))
    _assert_422_list(_post_raw(any_tsm, "times", b'{"batch_id": "\xff\xfe", "points": []}'))
    _assert_422_list(_post_raw(any_tsm, "times", b"\x80" * 64))
    # Non-finite metric values still mean divergence, as the contract says.
    response = _post_raw(any_tsm, "times", _batch([{**point(2), "scalars": {"loss": "NaN"}}]))
    assert response.status_code == 200 and response.json()["non_finite"] == 1


def test_a_repeated_point_counts_once(any_tsm):
    response = send(any_tsm, "dupes", [point(5, loss=3.0), point(5, loss=2.0), point(5, loss=1.0)])
    assert response.status_code == 200, response.text
    assert response.json()["accepted_points"] == 1  # was 3 with 1 stored
    curve = any_tsm.get("/v1/jobs/dupes/curves/scalar/loss").json()["points"]
    assert [(p["step"], p["value"]) for p in curve] == [(5, 1.0)]


@pytest.mark.parametrize(
    "update",
    [
        {"policy": {"name": "odm", "mixture": "main", "window_steps": 3_000_000_000}},  # the issue's case
        {"detectors": {"spike": {"window": 2**31}}},
        {"detectors": {"spike": {"factor": "Infinity"}}},
        {"detectors": {"stall": {"seconds": 1e300}}},
        {"detectors": {"plateau": {"min_relative_drop": 5.0}}},
        {"detectors": {"spike": {"rollback_margin_steps": 2**62}}},
        {"policy": {"params": {"eta": "NaN"}}},
        {"policy": {"mixture": "main\x00"}},
    ],
)
def test_a_setting_that_would_switch_detection_off_is_refused(pg_tsm, update):
    assert send(pg_tsm, "guarded", [point(s, loss=5.0) for s in range(1, 60)]).status_code == 200
    before = pg_tsm.get("/v1/jobs/guarded").json()["config"]
    _assert_422_list(pg_tsm.patch("/v1/jobs/guarded/config", json=update))
    assert pg_tsm.get("/v1/jobs/guarded").json()["config"] == before
    # Detection still runs for the job: a spike after the refused update is found.
    assert send(pg_tsm, "guarded", [point(s, loss=50.0) for s in range(60, 64)]).status_code == 200
    events = pg_tsm.post("/v1/jobs/guarded/evaluate")
    assert events.status_code == 200, events.text
    assert "loss_spike" in {e["kind"] for e in events.json()}


def test_a_raw_nan_param_on_postgresql_is_a_422(pg_tsm):
    # `{"policy":{"params":{"eta":NaN}}}` (a bare NaN token, which Python's json reads) reached a JSON column: a 500.
    response = pg_tsm.patch(
        "/v1/jobs/nan-param/config", content=b'{"policy": {"params": {"eta": NaN}}}', headers={"Content-Type": "application/json"}
    )
    _assert_422_list(response)


def test_every_422_detail_is_a_list(any_tsm):
    assert send(any_tsm, "shapes", [point(1, loss=1.0)]).status_code == 200
    detail = _assert_422_list(any_tsm.get("/v1/jobs/shapes/curves/scalar/loss", params={"step_min": 5, "step_max": 2}))
    assert detail[0]["loc"] == ["query", "step_max"] and "below" in detail[0]["msg"]


def test_the_openapi_documents_the_metrics_body_and_every_status(any_tsm):
    document = any_tsm.get("/openapi.json").json()
    ingest = document["paths"]["/v1/jobs/{job}/metrics"]["post"]
    body = ingest["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/MetricBatch"}
    schemas = document["components"]["schemas"]
    assert {"MetricBatch", "StepPoint", "EvalResult", "LayerStat"} <= schemas.keys()
    assert schemas["StepPoint"]["properties"]["step"]["maximum"] == INT64_MAX
    assert {"401", "403", "413", "422"} <= ingest["responses"].keys()
    assert "404" in document["paths"]["/v1/jobs/{job}"]["get"]["responses"]
    assert {"404", "409"} <= document["paths"]["/v1/jobs/{job}/rollbacks/{rollback_id}"]["patch"]["responses"].keys()


def _raw_exchange(url: str, paths: list[str]) -> list[bytes]:
    """Send GETs one after another on ONE connection; returns each response's status line (b'' once closed)."""
    host, port = url.removeprefix("http://").split(":")
    lines = []
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        stream = sock.makefile("rb")
        for path in paths:
            try:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            except OSError:
                lines.append(b"")
                continue
            status = stream.readline()
            lines.append(status.strip())
            length = 0
            while (header := stream.readline()) not in (b"\r\n", b""):
                name, _, value = header.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            stream.read(length)
    return lines


def test_a_500_keeps_the_connection_open():
    # No route of the services raises on purpose any more, so a tiny app with the same error handling
    # stands in: after a 500, the next request on the same keep-alive connection is answered.
    app = FastAPI()
    install_error_handling(app)

    @app.get("/boom")
    def boom() -> dict:
        raise RuntimeError("a bug")

    @app.get("/fine")
    def fine() -> dict:
        return {"ok": True}

    with serve_app(app) as url:
        assert _raw_exchange(url, ["/boom", "/fine", "/boom", "/fine"]) == [
            b"HTTP/1.1 500 Internal Server Error",
            b"HTTP/1.1 200 OK",
            b"HTTP/1.1 500 Internal Server Error",
            b"HTTP/1.1 200 OK",
        ]


def test_writes_without_a_token_stay_refused_with_bad_input(any_tsm):
    # The bounds are checked after authentication: an anonymous bad batch is a 401, not a 422.
    response = any_tsm.post("/v1/jobs/anon/metrics", content=b"\xff", headers={"Authorization": "", "Content-Type": "application/json"})
    assert response.status_code == 401
    assert any_tsm.post("/v1/jobs/anon/metrics", content=_batch([point(1, loss=1.0)]), headers=auth()).status_code == 200
