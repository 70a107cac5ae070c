"""The mixture REST contract (dmu_service/schemas/mixtures.py) against a real server and database."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from heurimentor.contracts.mixtures import MixtureClient, MixtureConflict
from tests.dmu.testlib import add_sources, auth, live_server, settings_for


def _create(http: httpx.Client, weights: dict, name: str = "main") -> httpx.Response:
    return http.post("/mixtures", json={"name": name, "weights": weights, "author": "alice", "reason": "start"}, headers=auth())


def test_versions_etag_and_history(http: httpx.Client) -> None:
    add_sources(http, "web-en", "books-zh")
    created = _create(http, {"web-en": 3, "books-zh": 1})
    assert created.status_code == 201, created.text
    assert created.headers["ETag"] == '"1"'
    body = created.json()
    assert body["weights"] == {"books-zh": 0.25, "web-en": 0.75}
    assert body["raw_weights"] == {"books-zh": 1, "web-en": 3}

    current = http.get("/mixtures/main/current")
    assert current.status_code == 200 and current.headers["ETag"] == '"1"'
    assert http.get("/mixtures/main/current", headers={"If-None-Match": '"1"'}).status_code == 304

    updated = http.put(
        "/mixtures/main",
        json={"weights": {"web-en": 1, "books-zh": 1}, "author": "tsm", "reason": "loss plateau"},
        headers={**auth(), "If-Match": '"1"'},
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["version"] == 2
    changed = http.get("/mixtures/main/current", headers={"If-None-Match": '"1"'})
    assert changed.status_code == 200 and changed.json()["version"] == 2

    patched = http.patch("/mixtures/main", json={"weights": {"books-zh": 0}, "author": "bob", "reason": "drop zh"}, headers=auth())
    assert patched.status_code == 200, patched.text
    assert patched.json()["weights"] == {"web-en": 1.0}

    history = http.get("/mixtures/main/versions").json()
    assert [(v["version"], v["author"], v["reason"]) for v in history] == [
        (1, "alice", "start"),
        (2, "tsm", "loss plateau"),
        (3, "bob", "drop zh"),
    ]
    assert http.get("/mixtures/main/versions/1").json()["raw_weights"] == {"books-zh": 1, "web-en": 3}
    assert http.get("/mixtures/main/versions/9").status_code == 404
    assert http.get("/mixtures").json()[0]["current_version"] == 3
    assert _create(http, {"web-en": 1}).status_code == 409


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"weights": {"web-en": -1, "books-zh": 2}}', "must be >= 0"),
        ('{"weights": {"web-en": NaN, "books-zh": 2}}', "finite"),
        ('{"weights": {"web-en": Infinity}}', "finite"),
        ('{"weights": {"web-en": 0, "books-zh": 0}}', "sum to 0"),
        ('{"weights": {"web-en": 1, "nowhere": 2}}', "unknown source(s) nowhere"),
        ('{"weights": {}}', "at least 1"),
        ('{"weights": {"web-en": "lots"}}', "valid number"),
    ],
)
def test_bad_weights_are_422_and_create_no_version(http: httpx.Client, body: str, reason: str) -> None:
    add_sources(http, "web-en", "books-zh")
    assert _create(http, {"web-en": 1}).status_code == 201
    response = http.put("/mixtures/main", content=body, headers={**auth(), "Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert reason in response.text
    assert [v["version"] for v in http.get("/mixtures/main/versions").json()] == [1]
    assert http.get("/mixtures/main").json()["raw_weights"] == {"web-en": 1}


def test_patch_to_all_zero_is_422(pg_http: httpx.Client) -> None:
    add_sources(pg_http, "web-en")
    assert _create(pg_http, {"web-en": 1}).status_code == 201
    response = pg_http.patch("/mixtures/main", json={"weights": {"web-en": 0}}, headers=auth())
    assert response.status_code == 422 and "sum to 0" in response.text
    assert pg_http.get("/mixtures/main").json()["version"] == 1


def test_if_match_conflict_is_412_without_new_version(pg_http: httpx.Client) -> None:
    add_sources(pg_http, "web-en", "books-zh")
    _create(pg_http, {"web-en": 1})
    assert pg_http.put("/mixtures/main", json={"weights": {"books-zh": 1}}, headers={**auth(), "If-Match": '"1"'}).status_code == 200
    stale = pg_http.put("/mixtures/main", json={"weights": {"web-en": 5}}, headers={**auth(), "If-Match": '"1"'})
    assert stale.status_code == 412 and "version 2" in stale.text
    assert pg_http.put("/mixtures/main", json={"weights": {"web-en": 5}}, headers={**auth(), "If-Match": "garbage"}).status_code == 400
    assert pg_http.get("/mixtures/main").json()["raw_weights"] == {"books-zh": 1}


def test_concurrent_writers_with_same_if_match_one_wins(pg_dmu_url: str) -> None:
    with httpx.Client(base_url=pg_dmu_url) as http:
        add_sources(http, "web-en", "books-zh")
        _create(http, {"web-en": 1})
    results: list[int] = []

    def write(weight: float) -> None:
        with httpx.Client(base_url=pg_dmu_url) as client:
            r = client.put("/mixtures/main", json={"weights": {"web-en": weight}}, headers={**auth(), "If-Match": '"1"'})
            results.append(r.status_code)

    threads = [threading.Thread(target=write, args=(w,)) for w in (2.0, 3.0, 4.0, 5.0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 412, 412, 412]
    with httpx.Client(base_url=pg_dmu_url) as http:
        assert [v["version"] for v in http.get("/mixtures/main/versions").json()] == [1, 2]


def test_mutations_need_the_token_and_reads_are_configurable(postgres_url: str, tmp_path) -> None:
    with live_server(settings_for(postgres_url, tmp_path)) as url, httpx.Client(base_url=url) as http:
        add_sources(http, "web-en")
        body = {"name": "main", "weights": {"web-en": 1}}
        assert http.post("/mixtures", json=body).status_code == 401
        wrong = http.post("/mixtures", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"] == "Bearer"
        assert http.post("/sources", json={"name": "x", "language": "en"}).status_code == 401
        assert http.get("/mixtures").status_code == 200
        assert http.get("/mixtures").json() == []
    with (
        live_server(settings_for(postgres_url, tmp_path, reads_require_auth=True), migrate=False) as url,
        httpx.Client(base_url=url) as http,
    ):
        assert http.get("/mixtures").status_code == 401
        assert http.get("/mixtures", headers=auth()).status_code == 200
        assert http.get("/healthz").status_code == 200


def test_long_poll_wakes_on_change_and_times_out_with_304(dmu_url: str) -> None:
    with httpx.Client(base_url=dmu_url, timeout=30) as http:
        add_sources(http, "web-en", "books-zh")
        _create(http, {"web-en": 1})
        started = time.monotonic()
        timed_out = http.get("/mixtures/main/current", params={"wait": 0.4}, headers={"If-None-Match": '"1"'})
        assert timed_out.status_code == 304 and time.monotonic() - started >= 0.4

    seen: dict = {}

    def poll() -> None:
        with MixtureClient(dmu_url) as client:
            seen["version"] = client.current("main", known_version=1, wait=20)
            seen["at"] = time.monotonic()

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.5)
    with MixtureClient(dmu_url, token=auth()["Authorization"].split()[1]) as client:
        changed_at = time.monotonic()
        client.update("main", {"books-zh": 1}, reason="shift", author="tsm", if_match=1)
    poller.join(timeout=25)
    assert seen["version"] is not None and seen["version"].version == 2
    assert seen["version"].weights == {"books-zh": 1.0}
    # Woken by the change, not by the 20 s timeout.
    assert seen["at"] - changed_at < 10


def test_change_through_another_replica_is_seen_by_db_polling(postgres_url: str, tmp_path) -> None:
    with (
        live_server(settings_for(postgres_url, tmp_path)) as replica_a,
        live_server(settings_for(postgres_url, tmp_path), migrate=False) as replica_b,
    ):
        with httpx.Client(base_url=replica_a) as http:
            add_sources(http, "web-en", "books-zh")
            _create(http, {"web-en": 1})
        result: dict = {}

        def poll() -> None:
            with MixtureClient(replica_b) as client:
                result["version"] = client.current("main", known_version=1, wait=20)

        poller = threading.Thread(target=poll)
        poller.start()
        time.sleep(0.3)
        with MixtureClient(replica_a, token=auth()["Authorization"].split()[1]) as client:
            client.update("main", {"books-zh": 2}, reason="r", author="a")
        poller.join(timeout=25)
        assert result["version"].version == 2


def test_server_sent_events_stream_every_version(pg_dmu_url: str) -> None:
    with httpx.Client(base_url=pg_dmu_url, timeout=30) as http:
        add_sources(http, "web-en", "books-zh")
        _create(http, {"web-en": 1})
        events: list[dict] = []

        def listen() -> None:
            with httpx.Client(base_url=pg_dmu_url, timeout=30) as client, client.stream("GET", "/mixtures/main/events") as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                for line in stream.iter_lines():
                    if line.startswith("data: "):
                        events.append(json.loads(line[6:]))
                        if len(events) == 3:
                            return

        listener = threading.Thread(target=listen)
        listener.start()
        time.sleep(0.5)
        http.put("/mixtures/main", json={"weights": {"books-zh": 1}}, headers=auth())
        time.sleep(0.2)
        http.patch("/mixtures/main", json={"weights": {"web-en": 1}}, headers=auth())
        listener.join(timeout=20)
        assert [e["version"] for e in events] == [1, 2, 3]
        assert events[2]["weights"] == {"books-zh": 0.5, "web-en": 0.5}
        # A reconnecting client names the last version it saw and gets only newer ones.
        http.put("/mixtures/main", json={"weights": {"web-en": 1}}, headers=auth())
        with http.stream("GET", "/mixtures/main/events", headers={"Last-Event-ID": "3"}) as stream:
            first = next(line for line in stream.iter_lines() if line.startswith("id: "))
        assert first == "id: 4"
        assert http.get("/mixtures/nope/events").status_code == 404


def test_client_conflict_and_unknown_mixture(pg_dmu_url: str) -> None:
    token = auth()["Authorization"].split()[1]
    with httpx.Client(base_url=pg_dmu_url) as http:
        add_sources(http, "web-en")
    with MixtureClient(pg_dmu_url, token=token) as client:
        assert client.get("main") is None
        client.create("main", {"web-en": 1}, reason="r", author="a")
        client.update("main", {"web-en": 2}, reason="r", author="a", if_match=1)
        with pytest.raises(MixtureConflict, match="version 1"):
            client.update("main", {"web-en": 3}, reason="r", author="a", if_match=1)
        assert client.current("main", known_version=2) is None
        assert len(client.versions("main")) == 2
