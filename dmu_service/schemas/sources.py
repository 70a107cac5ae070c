"""Source and run schemas of the DMU REST API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from heurimentor.contracts.bounds import bounded_text
from heurimentor.contracts.mixtures import MIXTURE_NAME_PATTERN

Language = Literal["en", "zh", "code", "mixed"]
# The column lengths; no NUL or lone surrogate (PostgreSQL cannot store them).
Domain = bounded_text(100)
Location = bounded_text(2000)


class SourceBase(BaseModel):
    language: Language
    domain: Domain = ""
    location: Location = Field(default="", description="where the raw data lives (path or URL)")
    pipeline: dict = Field(default_factory=dict, description="overrides of the cleaning stages (PipelineConfig)")


class SourceCreate(SourceBase):
    name: str = Field(pattern=MIXTURE_NAME_PATTERN)


class SourceUpdate(BaseModel):
    domain: Domain | None = None
    location: Location | None = None
    pipeline: dict | None = None


class SourcePublic(SourceBase):
    model_config = ConfigDict(from_attributes=True)

    name: str
    created_at: datetime


class RunPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    source: str
    status: str
    backend: str
    inputs: list[str]
    tokenizer_id: str | None
    counts: dict
    progress: dict = Field(description="files done / total and the current file's position")
    error: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
