"""The progress annotation: trainer rank 0 writes it on its own pod, the operator folds it into ``.status``.

``heurimentor.io/progress`` holds compact JSON, ``Progress`` below (camelCase on the wire):
``{"step", "loss", "mixtureVersion", "tokens", "checkpoint": {"step", "path"}}``. Every field is
optional: a report carries what the trainer knows so far (the last step, the last checkpoint).
"""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

ANNOTATION_PROGRESS = "heurimentor.io/progress"


class CheckpointRef(BaseModel):
    model_config = ConfigDict(extra="ignore")

    step: int = Field(ge=0)
    path: str


class Progress(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    step: int | None = Field(default=None, ge=0, description="last finished optimizer step")
    loss: float | None = Field(default=None, description="training loss at that step (NaN travels as null)")
    mixture_version: int | None = Field(default=None, alias="mixtureVersion")
    tokens: int | None = Field(default=None, ge=0, description="global tokens consumed up to that step")
    checkpoint: CheckpointRef | None = Field(default=None, description="the checkpoint a restart resumes from")


def encode_progress(fields: dict[str, Any]) -> str:
    """The annotation value for ``fields`` (wire names); a non-finite loss is sent as null (strict JSON)."""
    body = dict(fields)
    if isinstance(body.get("loss"), float) and not math.isfinite(body["loss"]):
        body["loss"] = None
    Progress.model_validate(body)  # the writer never sends what the reader would refuse
    return json.dumps(body, separators=(",", ":"))


def parse_progress(raw: str) -> dict[str, Any]:
    """The annotation's fields as sent (wire names); ValueError names what is wrong."""
    try:
        body = json.loads(raw)
        Progress.model_validate(body)
    except (ValueError, ValidationError) as e:
        raise ValueError(f"annotation {ANNOTATION_PROGRESS} is not a progress report: {e}") from e
    return body
