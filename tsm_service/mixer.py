"""The service side of the adaptive mixture: feed the job's policy from the database and write its
decisions to the DMU as new mixture versions, guarded by If-Match so a human edit is never overwritten."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.orm import Session

from heurimentor.contracts.mixtures import MixtureClient, MixtureConflict, MixtureRequestError
from tsm_service.config import PolicyConfig
from tsm_service.crud.events import record_event
from tsm_service.crud.windows import latest_event_step, source_losses
from tsm_service.models import Job, PolicyState
from tsm_service.policies import MixtureController, make_policy

log = logging.getLogger(__name__)


class MixtureUpdater:
    def __init__(self, client_factory: Callable[[], MixtureClient] | None, *, author: str):
        self.client_factory = client_factory
        self.author = author

    def run(self, session: Session, *, job: Job, config: PolicyConfig, now: float) -> list[int]:
        """Observe the job's per-source losses and, when due, write one update. Returns new event ids."""
        if config.name == "static" or config.mixture is None or self.client_factory is None or job.last_step is None:
            return []
        losses = source_losses(session, job_id=job.id, last_step=job.last_step, window_steps=config.window_steps)
        if not losses:
            return []
        with self.client_factory() as client:
            try:
                current = client.current(config.mixture)
            except MixtureRequestError as e:
                log.warning(
                    "cannot read mixture from the DMU",
                    extra={"job": job.name, "mixture": config.mixture, "error": f"{type(e).__name__}: {e}"},
                )
                return []
            state = self._state(session, job=job, config=config)
            controller = MixtureController(make_policy(config.name, list(current.weights), params=config.params), config.guardrails)
            controller.load_state_dict(state.state)
            allowed = True
            if config.trigger == "plateau":
                plateau = latest_event_step(session, job_id=job.id, kind="plateau")
                allowed = plateau is not None and plateau > (controller.last_update_step or -1)
            decision = controller.step(current=current.weights, losses=losses, step=job.last_step, update_allowed=allowed)
            event_ids = []
            if decision is not None:
                evidence = {
                    "mixture": config.mixture,
                    "policy": config.name,
                    "from_version": current.version,
                    "previous": decision.previous,
                    "weights": decision.weights,
                    "losses": decision.losses,
                    "guardrails": config.guardrails.model_dump(),
                }
                try:
                    written = client.update(
                        config.mixture, decision.weights, reason=decision.reason, author=self.author, if_match=current.version
                    )
                except MixtureConflict as e:
                    controller.last_update_step = state.last_update_step  # nothing was written
                    event_ids.append(
                        record_event(
                            session,
                            job_id=job.id,
                            kind="mixture_conflict",
                            severity="warning",
                            step=job.last_step,
                            subject=config.mixture,
                            evidence=evidence | {"error": str(e)},
                            now=now,
                            message=(
                                f"mixture {config.mixture} changed since version {current.version} while the TSM "
                                f"was updating it; the TSM's update was not written"
                            ),
                        )
                    )
                except MixtureRequestError as e:
                    controller.last_update_step = state.last_update_step
                    log.warning(
                        "mixture update failed", extra={"job": job.name, "mixture": config.mixture, "error": f"{type(e).__name__}: {e}"}
                    )
                else:
                    state.weights, state.mixture_version = written.weights, written.version
                    job.mixture_version = written.version
                    event_ids.append(
                        record_event(
                            session,
                            job_id=job.id,
                            kind="mixture_update",
                            severity="info",
                            step=job.last_step,
                            subject=config.mixture,
                            evidence=evidence | {"version": written.version},
                            now=now,
                            message=f"mixture {config.mixture} -> version {written.version}: {decision.reason}",
                        )
                    )
            state.state = controller.state_dict()
            state.last_update_step = controller.last_update_step
            return [i for i in event_ids if i is not None]

    @staticmethod
    def _state(session: Session, *, job: Job, config: PolicyConfig) -> PolicyState:
        state = session.get(PolicyState, job.id)
        if state is None or state.policy != config.name or state.mixture != config.mixture:
            # A new policy or mixture starts from scratch rather than from another policy's memory.
            if state is not None:
                session.delete(state)
                session.flush()
            state = PolicyState(job_id=job.id, policy=config.name, mixture=config.mixture, state={}, weights={})
            session.add(state)
        return state
