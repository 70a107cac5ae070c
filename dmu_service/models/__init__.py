"""SQLAlchemy 2 typed ORM models of the DMU."""

from dmu_service.models.base import Base
from dmu_service.models.exclusion import Exclusion
from dmu_service.models.mixture import Mixture, MixtureVersion
from dmu_service.models.run import Run, RunStatus
from dmu_service.models.source import Source

__all__ = ["Base", "Exclusion", "Mixture", "MixtureVersion", "Run", "RunStatus", "Source"]
