from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Finding:
    kind: str
    severity: Literal["info", "warning", "critical"]
    step: int
    subject: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    # (first bad step, last bad step) when the finding calls for a rollback.
    bad_steps: tuple[int, int] | None = None
    # The step at which the finding became certain; the monitor reports each finding once, when its
    # confirmation step is new (a spike is certain only after ``consecutive`` steps).
    confirmed_step: int | None = None

    @property
    def confirmed_at(self) -> int:
        return self.step if self.confirmed_step is None else self.confirmed_step
