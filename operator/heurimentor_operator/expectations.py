"""What this operator just did that its pod watch has not shown yet (controller expectations).

Reconciles read pods from the watch-fed index instead of listing them, so a pass that runs before
the watch delivers our own create or delete would otherwise decide the same thing again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from heurimentor_operator.conditions import rfc3339

EXPECTATION_TTL_S = 30.0


class Expectations:
    def __init__(self, ttl_s: float = EXPECTATION_TTL_S, clock: Callable[[], float] = time.monotonic):
        self.ttl_s, self.clock = ttl_s, clock
        self._created: dict[str, tuple[dict[str, Any], float]] = {}  # pod name -> (placeholder, deadline)
        self._deleted: dict[str, float] = {}  # pod uid -> deadline

    def created(self, manifest: dict[str, Any], now: datetime | None = None) -> None:
        meta = manifest["metadata"]
        placeholder = {
            "metadata": {
                "name": meta["name"],
                "uid": f"expected:{meta['name']}",
                "labels": meta.get("labels", {}),
                "annotations": meta.get("annotations", {}),
                "creationTimestamp": rfc3339(now or datetime.now(UTC)),
            },
            "spec": {},
            "status": {"phase": "Pending"},
        }
        self._created[meta["name"]] = (placeholder, self.clock() + self.ttl_s)

    def deleted(self, uid: str) -> None:
        self._deleted[uid] = self.clock() + self.ttl_s

    def view(self, observed: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``observed`` plus pods created but not yet seen; pods deleted but still seen are terminating."""
        now = self.clock()
        names = {p["metadata"]["name"] for p in observed}
        uids = {p["metadata"].get("uid") for p in observed}
        self._created = {n: (p, d) for n, (p, d) in self._created.items() if n not in names and d > now}
        self._deleted = {u: d for u, d in self._deleted.items() if u in uids and d > now}
        pods = []
        for pod in observed:
            if pod["metadata"].get("uid") in self._deleted and not pod["metadata"].get("deletionTimestamp"):
                pod = {**pod, "metadata": {**pod["metadata"], "deletionTimestamp": "expected"}}
            pods.append(pod)
        return pods + [p for p, _ in self._created.values()]
