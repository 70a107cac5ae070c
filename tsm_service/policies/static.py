from __future__ import annotations

from tsm_service.policies.base import MixturePolicy


class StaticPolicy(MixturePolicy):
    """Keep whatever mixture is current: the baseline every adaptive policy is measured against."""

    name = "static"

    def observe(self, losses: dict[str, float], *, step: int) -> None:
        pass

    def propose(self, current: dict[str, float]) -> tuple[dict[str, float], str]:
        return dict(current), "static mixture"
