"""Which copy of the job a pass plans from (pure, no cluster)."""

from __future__ import annotations

from heurimentor_operator.handlers import _known_job


def job(resource_version: str, replicas: int) -> dict:
    return {"metadata": {"name": "j", "resourceVersion": resource_version}, "spec": {"elastic": {"replicas": replicas}}}


def test_the_watch_copy_unless_the_apiserver_already_answered_with_a_newer_job():
    # The watch still shows the job before our GET or status write: plan from the apiserver's answer.
    assert _known_job({"live": job("41", 8), "newest": job("57", 4)})["spec"]["elastic"]["replicas"] == 4
    # The watch has caught up, or moved past it (a user's edit): the watch copy.
    assert _known_job({"live": job("57", 4), "newest": job("57", 4)})["spec"]["elastic"]["replicas"] == 4
    assert _known_job({"live": job("60", 8), "newest": job("57", 4)})["spec"]["elastic"]["replicas"] == 8
    # Nothing answered yet, or versions that are not etcd revisions: the watch copy, as it is.
    assert _known_job({"live": job("41", 8), "newest": None})["spec"]["elastic"]["replicas"] == 8
    assert _known_job({"live": job("a", 8), "newest": job("b", 4)})["spec"]["elastic"]["replicas"] == 8


def test_the_copy_is_the_pass_s_own():
    state = {"live": job("41", 8), "newest": job("57", 4)}
    _known_job(state)["spec"]["elastic"]["replicas"] = 1
    assert state["newest"]["spec"]["elastic"]["replicas"] == 4
