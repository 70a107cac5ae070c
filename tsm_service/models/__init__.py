"""SQLAlchemy ORM of the TSM (tables prefixed ``tsm_`` so they can share a database with the DMU)."""

from tsm_service.models.base import Base
from tsm_service.models.event import EVENT_KINDS, Event, RollbackRecommendation
from tsm_service.models.job import IngestBatch, Job
from tsm_service.models.policy import PolicyState
from tsm_service.models.series import SERIES_KINDS, Sample, Series, StepRecord

__all__ = [
    "Base",
    "EVENT_KINDS",
    "Event",
    "IngestBatch",
    "Job",
    "PolicyState",
    "RollbackRecommendation",
    "SERIES_KINDS",
    "Sample",
    "Series",
    "StepRecord",
]
