"""The exclusion log on the wire: ``GET /runs/{id}/exclusions`` (owner: the DMU; readers: the CLI, people)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ExclusionPublic(BaseModel):
    id: int = Field(description="position in the run's log; pass as ?after= for the next page")
    document: str = Field(description="run:file:record")
    file: str = Field(description="the input file")
    record: int = Field(description="record (line, row, paragraph) within the file, from 0")
    rule: str = Field(description="reader problem, empty, language, a quality rule, exact_dup or near_dup")
    value: float | None = Field(description="what tripped the rule: its measured value, language confidence, or similarity")
    duplicate_of: str | None = Field(description="run:file:record of the kept document it duplicates")
    language: str


class ExclusionPage(BaseModel):
    items: list[ExclusionPublic]
    next_after: int | None = Field(description="?after= for the next page; null on the last")
