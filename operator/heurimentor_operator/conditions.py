"""Status conditions the way Kubernetes' own controllers keep them (meta.SetStatusCondition)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

# Blocked: the spec can never run as it is (pods the apiserver refuses, a batch that does not split);
# the job waits, workers removed, until the spec changes.
CONDITION_TYPES = ("Created", "Running", "Scaling", "Restarting", "Suspended", "Blocked", "Succeeded", "Failed")


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def get_condition(conditions: list[dict[str, Any]], type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def is_true(conditions: list[dict[str, Any]], type_: str) -> bool:
    cond = get_condition(conditions, type_)
    return bool(cond and cond.get("status") == "True")


def set_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    *,
    now: datetime,
    generation: int | None = None,
) -> bool:
    """Set one condition in place; lastTransitionTime moves only when the status flips.

    Returns whether the status flipped (callers emit an Event for that).
    """
    if type_ not in CONDITION_TYPES:
        raise ValueError(f"unknown condition type {type_!r}; known: {', '.join(CONDITION_TYPES)}")
    value = "True" if status else "False"
    cond = get_condition(conditions, type_)
    if cond is None:
        cond = {"type": type_}
        conditions.append(cond)
        flipped = True
    else:
        flipped = cond.get("status") != value
    if flipped:
        cond["lastTransitionTime"] = rfc3339(now)
    cond.update(status=value, reason=reason, message=message)
    if generation is not None:
        cond["observedGeneration"] = generation
    conditions.sort(key=lambda c: CONDITION_TYPES.index(c["type"]) if c.get("type") in CONDITION_TYPES else 99)
    return flipped
