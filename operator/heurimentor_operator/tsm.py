"""Acting on the TSM's rollback recommendations for jobs that set ``spec.tsm.autoRollback``.

The operator reads ``GET /v1/jobs/{job}/rollbacks?status=open`` on the job's TSM, writes one
rollback answering them onto the job as the rollback annotations (the one path by which a rollback
reaches the planner, whoever asked), then marks the recommendations it answers acknowledged on the
TSM and the ones it supersedes dismissed. Annotating first makes a crash in between harmless: the
next poll finds them still open, writes the same annotations again (no change, no second restart)
and closes them.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from heurimentor.contracts.worker_env import format_step_range
from heurimentor_operator.constants import ANNOTATION_ROLLBACK, ANNOTATION_ROLLBACK_ID, ANNOTATION_ROLLBACK_SKIP

REQUEST_ID_PREFIX = "tsm/"


class TSMError(Exception):
    """The TSM could not be reached or answered something unexpected."""


@dataclass(frozen=True)
class Recommendation:
    id: int
    resume_before_step: int
    skip_from_step: int
    skip_to_step: int
    reason: str

    @classmethod
    def from_api(cls, raw: dict[str, Any]) -> Recommendation:
        return cls(
            id=int(raw["id"]),
            resume_before_step=int(raw["resume_before_step"]),
            skip_from_step=int(raw["skip_from_step"]),
            skip_to_step=int(raw["skip_to_step"]),
            reason=str(raw.get("reason", "")),
        )


@dataclass(frozen=True)
class RollbackRequest:
    """One rollback that answers one or more recommendations."""

    resume_before_step: int
    skip_from_step: int
    skip_to_step: int
    answers: tuple[Recommendation, ...]

    @property
    def request_id(self) -> str:
        return REQUEST_ID_PREFIX + "+".join(str(r.id) for r in sorted(self.answers, key=lambda r: r.id))


def plan_rollback(open_recommendations: list[Recommendation]) -> tuple[RollbackRequest | None, list[Recommendation]]:
    """The rollback to ask for, and the open recommendations it supersedes.

    It starts from the recommendation with the latest trouble and takes in every other one whose
    flagged steps the restart would replay (flagged up to at or after the resume step): one
    restart, no bad data fed again. The rest flagged data training had already left behind when
    this trouble came; rolling back that far would throw away good steps, so they are superseded.
    """
    ordered = sorted(open_recommendations, key=lambda r: (r.skip_to_step, r.id), reverse=True)
    if not ordered:
        return None, []
    latest = ordered[0]
    resume, first, last, answers = latest.resume_before_step, latest.skip_from_step, latest.skip_to_step, [latest]
    superseded = []
    for rec in ordered[1:]:
        if rec.skip_to_step >= resume:
            resume, first, last = min(resume, rec.resume_before_step), min(first, rec.skip_from_step), max(last, rec.skip_to_step)
            answers.append(rec)
        else:
            superseded.append(rec)
    return RollbackRequest(resume, first, last, tuple(answers)), superseded


def rollback_annotations(request: RollbackRequest) -> dict[str, str | None]:
    """The job annotations that ask the planner for ``request`` (None removes a stale skip range)."""
    skip = format_step_range(request.skip_from_step, request.skip_to_step) if request.skip_from_step <= request.skip_to_step else None
    return {
        ANNOTATION_ROLLBACK: str(request.resume_before_step),
        ANNOTATION_ROLLBACK_SKIP: skip,
        ANNOTATION_ROLLBACK_ID: request.request_id,
    }


class TSMClient:
    """Blocking HTTP calls to one TSM (the handlers run them in their thread pool)."""

    def __init__(self, base_url: str, *, timeout_s: float = 10.0, token: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            **({"Authorization": f"Bearer {token}"} if token else {}),
        }

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, _detail(e)
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise TSMError(f"{method} {self.base_url}{path}: {e}") from e

    def open_rollbacks(self, job: str) -> list[Recommendation]:
        """The job's open recommendations; none while the TSM has not heard of the job (404)."""
        status, payload = self._request("GET", f"/v1/jobs/{urllib.parse.quote(job)}/rollbacks?status=open")
        if status == 404:
            return []
        if status != 200 or not isinstance(payload, list):
            raise TSMError(f"GET rollbacks of {job!r} from {self.base_url}: HTTP {status}: {payload}")
        try:
            return [Recommendation.from_api(r) for r in payload]
        except (KeyError, TypeError, ValueError) as e:
            raise TSMError(f"GET rollbacks of {job!r} from {self.base_url}: unexpected recommendation: {e!r}") from e

    def set_suspended(self, job: str, suspended: bool) -> None:
        """Tell the TSM the job is suspended (its silence is then no stall) or not; a job the TSM
        has not heard of (404) has nothing to pause."""
        code, payload = self._request("PUT", f"/v1/jobs/{urllib.parse.quote(job)}/suspension", {"suspended": suspended})
        if code not in (200, 404):
            raise TSMError(f"PUT suspension of {job!r} on {self.base_url}: HTTP {code}: {payload}")

    def close(self, job: str, rec: Recommendation, status: str) -> None:
        """Mark ``rec`` acknowledged or dismissed; one already closed (409) is left as it is."""
        code, payload = self._request("PATCH", f"/v1/jobs/{urllib.parse.quote(job)}/rollbacks/{rec.id}", {"status": status})
        if code not in (200, 409):
            raise TSMError(f"PATCH rollback {rec.id} of {job!r} on {self.base_url} to {status}: HTTP {code}: {payload}")


def _detail(e: urllib.error.HTTPError) -> Any:
    try:
        return json.loads(e.read() or b"null")
    except ValueError:
        return e.reason
