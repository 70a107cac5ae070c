"""The DMU FastAPI app: assembles routers, nothing else. Run migrations first (`heurimentor dmu migrate`)."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from dmu_service.api.metrics import DmuMetrics
from dmu_service.api.notify import MixtureNotifier
from dmu_service.api.routes import exclusions, health, mixtures, runs, sources
from dmu_service.config import Settings, load_settings
from dmu_service.db import make_engine, make_session_factory
from heurimentor.service_kit.app import install_security

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    engine = make_engine(settings.sqlalchemy_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.notifier.bind(asyncio.get_running_loop())
        log.info("DMU serving", extra={"database": engine.url.render_as_string(hide_password=True)})
        yield
        engine.dispose()

    app = FastAPI(
        title="HeuriMentor DMU",
        description="Data management unit: sources, ingestion runs and live, versioned data mixtures.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = make_session_factory(engine)
    app.state.notifier = MixtureNotifier(settings.mixture_poll_interval_s)
    app.state.metrics = DmuMetrics(app.state.session_factory)

    @app.middleware("http")
    async def record_request(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        app.state.metrics.requests.labels(request.method, path, str(response.status_code)).inc()
        app.state.metrics.latency.labels(request.method, path).observe(time.perf_counter() - started)
        return response

    install_security(app, settings)  # outermost: refuses before the request counter or a body parse
    for router in (health.router, sources.router, runs.router, exclusions.router, mixtures.router):
        app.include_router(router)
    return app
