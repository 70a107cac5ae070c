"""Events that survive a crash (pure; no API calls).

The planner records a decision in the job's status before its Events go out, so an operator killed
in between would lose them: a gang restart counted in ``status.restarts`` that ``kubectl describe``
never shows. The Events of a recorded decision (a restart, a rollback, the end, a blocked spec)
therefore carry a key, are kept in ``status.lastEvents`` by the same status write, and are posted
under a name derived from the job and that key. A restarted operator posts ``status.lastEvents``
again: an Event already posted is a 409, so every decision is announced exactly once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from heurimentor_operator.conditions import rfc3339
from heurimentor_operator.constants import API_VERSION, KIND, MANAGER

# The apiserver keeps Event messages up to 1 KiB in its own tools' output; longer ones only clutter.
MAX_MESSAGE = 1024


def event_name(job: dict[str, Any], key: str) -> str:
    """``<job>.<uid prefix>.<key>``: the job's name is at most 40 characters, a key a few words."""
    meta = job["metadata"]
    return f"{meta['name']}.{meta.get('uid', '')[:8]}.{key}"


def build_event(job: dict[str, Any], *, key: str, type_: str, reason: str, message: str, now: datetime) -> dict[str, Any]:
    """A core/v1 Event about ``job`` (an Aquila2TrainingJob body), named by ``key``."""
    meta = job["metadata"]
    moment = rfc3339(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": event_name(job, key), "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid", ""),
        },
        "type": type_,
        "reason": reason,
        "message": message[:MAX_MESSAGE],
        "source": {"component": MANAGER},
        "reportingComponent": MANAGER,
        "firstTimestamp": moment,
        "lastTimestamp": moment,
        "count": 1,
    }


def recorded_events(status: dict[str, Any]) -> list[dict[str, Any]]:
    """The keyed Events of the last recorded decision, as ``status.lastEvents`` holds them."""
    return [e for e in status.get("lastEvents") or [] if isinstance(e, dict) and e.get("key") and e.get("reason")]
