"""The closed loop against the real DMU app (dmu_service.api.main) on PostgreSQL: per-source losses in,
guarded mixture versions out through PUT + If-Match, and a human edit is never overwritten."""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterator

import httpx
import pytest

from dmu_service.api.main import create_app as create_dmu_app
from dmu_service.config import load_settings as load_dmu_settings
from dmu_service.migrations import upgrade as upgrade_dmu
from heurimentor.contracts.mixtures import MixtureClient
from tests.tsm.testlib import point, send, serve_app, tsm_client

TOKEN = secrets.token_urlsafe(32)
SOURCES = ["easy", "hard", "random"]
POLICY = {
    "name": "learning_progress",
    "mixture": "pretrain",
    "window_steps": 10,
    "params": {"prior_mix": 0.1},
    "guardrails": {"cooldown_steps": 20, "max_change": 0.1, "weight_floor": 0.05},
}


@pytest.fixture
def dmu_url(pg_server, request) -> Iterator[str]:
    """The real DMU on its own PostgreSQL database, with three sources and a uniform mixture 'pretrain'."""
    name = f"dmu_{request.node.name.lower()[:40]}".replace("-", "_").replace("[", "_").replace("]", "")
    url = pg_server.create_database(name)
    upgrade_dmu(url)
    app = create_dmu_app(load_dmu_settings(database_url=url, auth_token=TOKEN))
    with serve_app(app) as base:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for source in SOURCES:
            created = httpx.post(f"{base}/sources", json={"name": source, "language": "en"}, headers=auth)
            assert created.status_code == 201, created.text
        created = httpx.post(
            f"{base}/mixtures", headers=auth, json={"name": "pretrain", "author": "alice", "weights": {s: 1.0 for s in SOURCES}}
        )
        assert created.status_code == 201, created.text
        yield base
    pg_server.drop_database(name)


def _losses(t: int) -> dict[str, float]:
    return {"easy": 1.0 + 2.0 * 0.7**t, "hard": 3.0 + 3.0 * 0.98**t, "random": math.log(1000)}


def _train(client, steps: range) -> list[dict]:
    """Send one point per step (per-source losses), evaluating every 10 steps; returns the new events."""
    events = []
    for step in steps:
        p = point(step, loss=3.0)
        p["source_losses"] = _losses(step // 10)
        assert send(client, "job-a", [p]).status_code == 200
        if step % 10 == 9:
            events += client.post("/v1/jobs/job-a/evaluate").json()
    return [e for e in events if e["kind"].startswith("mixture")]


def _versions(dmu_url: str) -> list[dict]:
    return httpx.get(f"{dmu_url}/mixtures/pretrain/versions", headers={"Authorization": f"Bearer {TOKEN}"}).json()


def test_policy_writes_guarded_versions_with_reason(dmu_url, postgres_url):
    with tsm_client(postgres_url, dmu_url=dmu_url, dmu_token=TOKEN) as tsm:
        _train(tsm, range(0, 10))
        assert tsm.patch("/v1/jobs/job-a/config", json={"policy": POLICY}).status_code == 200
        events = _train(tsm, range(10, 200))
        metrics = tsm.get("/metrics").text

    versions = sorted(_versions(dmu_url), key=lambda v: v["version"])
    assert len(versions) >= 5 and versions[0]["author"] == "alice"
    written = versions[1:]
    assert all(v["author"] == "tsm" and v["reason"].startswith("learning_progress at step") for v in written)
    assert [e["kind"] for e in events] == ["mixture_update"] * len(written)
    assert [e["evidence"]["version"] for e in events] == [v["version"] for v in written]
    update_steps = [e["step"] for e in events]
    assert all(b - a >= 20 for a, b in zip(update_steps, update_steps[1:]))  # cool-down
    for before, after in zip(versions, versions[1:]):
        assert max(abs(after["weights"][s] - before["weights"][s]) for s in SOURCES) <= 0.1 + 1e-6
        assert min(after["weights"].values()) >= 0.05 - 1e-6
    final = versions[-1]["weights"]
    assert final["random"] < 1 / 3 and max(final, key=final.get) in ("easy", "hard")
    assert f'heurimentor_tsm_mixture_updates_total{{job_name="job-a"}} {float(len(written))}' in metrics
    assert f'heurimentor_tsm_job_mixture_version{{job_name="job-a"}} {float(versions[-1]["version"])}' in metrics


class _HumanEditsMeanwhile(MixtureClient):
    """A client that, once armed, lets a human PUT land between the TSM's read and its write."""

    armed = False

    def current(self, name, **kwargs):
        seen = super().current(name, **kwargs)
        if _HumanEditsMeanwhile.armed:
            _HumanEditsMeanwhile.armed = False
            human = httpx.put(
                f"{self._http.base_url}/mixtures/{name}",
                headers={"Authorization": f"Bearer {TOKEN}"},
                json={
                    "weights": {"easy": 0.2, "hard": 0.2, "random": 0.6},
                    "author": "bob",
                    "reason": "manual change while the TSM decides",
                },
            )
            assert human.status_code == 200, human.text
        return seen


def test_human_edit_between_read_and_write_is_not_overwritten(dmu_url, postgres_url):
    _HumanEditsMeanwhile.armed = False
    with tsm_client(
        postgres_url, dmu_url=dmu_url, dmu_token=TOKEN, mixture_client_factory=lambda: _HumanEditsMeanwhile(dmu_url, token=TOKEN)
    ) as tsm:
        _train(tsm, range(0, 10))
        policy = {**POLICY, "guardrails": {**POLICY["guardrails"], "cooldown_steps": 0}}
        assert tsm.patch("/v1/jobs/job-a/config", json={"policy": policy}).status_code == 200
        assert {e["kind"] for e in _train(tsm, range(10, 40))} == {"mixture_update"}
        before = max(v["version"] for v in _versions(dmu_url))

        _HumanEditsMeanwhile.armed = True
        conflict = _train(tsm, range(40, 50))
        assert [e["kind"] for e in conflict] == ["mixture_conflict"]
        assert f"changed since version {before}" in conflict[0]["message"]
        latest = max(_versions(dmu_url), key=lambda v: v["version"])
        assert (latest["version"], latest["author"]) == (before + 1, "bob")  # bob's edit stands

        # The next decision starts from bob's version and is written with If-Match on it.
        after = _train(tsm, range(50, 60))
        assert [e["kind"] for e in after] == ["mixture_update"]
        assert after[0]["evidence"]["from_version"] == before + 1
        assert after[0]["evidence"]["previous"] == pytest.approx({"easy": 0.2, "hard": 0.2, "random": 0.6})
    latest = max(_versions(dmu_url), key=lambda v: v["version"])
    assert latest["version"] == before + 2 and latest["author"] == "tsm"
    assert abs(latest["weights"]["random"] - 0.6) <= 0.1 + 1e-6  # a bounded step from bob's weights


def test_unreachable_dmu_is_logged_not_fatal(postgres_url):
    with tsm_client(postgres_url, dmu_url="http://127.0.0.1:9", dmu_token=TOKEN) as tsm:
        _train(tsm, range(0, 10))
        assert tsm.patch("/v1/jobs/job-a/config", json={"policy": POLICY}).status_code == 200
        assert _train(tsm, range(10, 30)) == []
        assert tsm.get("/v1/jobs/job-a").json()["last_step"] == 29


def test_plateau_trigger_updates_only_after_a_plateau(dmu_url, postgres_url):
    with tsm_client(postgres_url, dmu_url=dmu_url, dmu_token=TOKEN) as tsm:
        _train(tsm, range(0, 10))
        policy = {**POLICY, "trigger": "plateau", "guardrails": {**POLICY["guardrails"], "cooldown_steps": 0}}
        config = {"policy": policy, "detectors": {"plateau": {"window": 40}}}
        assert tsm.patch("/v1/jobs/job-a/config", json=config).status_code == 200
        assert _train(tsm, range(10, 30)) == []  # the flat loss is not yet a plateau (30 reports < 40)
        first = _train(tsm, range(30, 40))
        plateaus = tsm.get("/v1/jobs/job-a/events", params={"kind": "plateau"}).json()
        assert [p["step"] for p in plateaus] == [39]
        assert [(e["kind"], e["step"]) for e in first] == [("mixture_update", 39)]
        assert _train(tsm, range(40, 70)) == []  # same plateau: no new trigger
        assert [e["kind"] for e in _train(tsm, range(70, 80))] == ["mixture_update"]  # the next window's plateau
