"""The TSM app: assembles routers and owns the per-app state (engine, sessions, exposition, monitor)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI

from heurimentor.contracts.mixtures import MixtureClient
from heurimentor.service_kit.app import install_security
from tsm_service.api.routes import curves, events, health, ingest, jobs, metrics
from tsm_service.config import Settings, load_settings
from tsm_service.db import make_engine, make_session_factory
from tsm_service.exposition import Exposition
from tsm_service.mixer import MixtureUpdater
from tsm_service.monitor import Monitor


def _mixture_client_factory(settings: Settings) -> Callable[[], MixtureClient] | None:
    if not settings.dmu_url:
        return None
    token = settings.dmu_token.get_secret_value() if settings.dmu_token else None
    return lambda: MixtureClient(settings.dmu_url, token=token)


def create_app(settings: Settings | None = None, *, mixture_client_factory: Callable[[], MixtureClient] | None = None) -> FastAPI:
    """``mixture_client_factory`` overrides the DMU client built from settings (e.g. an in-process transport)."""
    settings = settings or load_settings()
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    updater = MixtureUpdater(mixture_client_factory or _mixture_client_factory(settings), author=settings.author)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = None
        if settings.evaluate_interval_seconds > 0:
            loop = asyncio.create_task(app.state.monitor.run_forever(settings.evaluate_interval_seconds))
        try:
            yield
        finally:
            if loop is not None:
                loop.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop
            engine.dispose()

    app = FastAPI(
        title="HeuriMentor TSM",
        version="0.1.0",
        lifespan=lifespan,
        description="Training state monitor: metric ingest, curves, anomaly detection, adaptive data mixture.",
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = sessions
    app.state.exposition = Exposition(sessions, job_ttl_seconds=settings.metrics_job_ttl_seconds)
    app.state.monitor = Monitor(sessions, settings, updater)
    install_security(app, settings)  # outermost: refuses before a body is read
    for router in (health.router, ingest.router, jobs.router, curves.router, events.router, metrics.router):
        app.include_router(router)
    return app
