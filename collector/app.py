"""The FastAPI application: routers are thin, logic lives in plain modules, the store behind one seam."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import TypeAdapter
from sqlalchemy.exc import InterfaceError, OperationalError

from agent import wire
from collector import __version__, scorekeeper, selfmetrics
from collector.api import alerts, audit, auth, enroll, evidence, ingest, metrics, points, scores, ui
from collector.settings import Settings

log = logging.getLogger("pointwatch.collector")


def create_app(settings: Settings, store=None) -> FastAPI:
    # docs_url=None: FastAPI's default /docs loads Swagger UI from a CDN; ours serves the vendored copy.
    app = FastAPI(title="pointwatch collector", version=__version__,
                  description="医保服务点运行监测 — collector API", docs_url=None, redoc_url=None,
                  lifespan=_lifespan)
    app.state.settings = settings
    app.state.store = store or settings.open_store()
    # Background services (start(), stop()) run for the app's lifetime. A lifespan replaces Starlette's
    # on_startup/on_shutdown handlers, so services register here rather than there.
    app.state.services = []
    for module in (ingest, enroll, points, scores, metrics, evidence, ui, auth, audit):
        app.include_router(module.router)
    app.include_router(auth.api)
    alerts.install(app)  # GET /api/v1/alerts, silences; the alert worker runs with the app
    scorekeeper.install(app)  # "now" scores kept current for /metrics
    app.mount("/static", StaticFiles(directory=str(ui.WEB / "static")), name="static")

    @app.middleware("http")
    async def timing(request: Request, call_next):
        t0 = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        selfmetrics.REQUEST_SECONDS.labels(getattr(route, "path", "unmatched"), request.method).observe(
            time.perf_counter() - t0)
        return response

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="pointwatch collector API",
            swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css", swagger_favicon_url="/static/favicon.png")

    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(InterfaceError, _database_unavailable)
    _document_wire_schemas(app)
    return app


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """The database went away (restart, failover, network): a clean 503 the agents retry, one log line.

    The transaction was rolled back with the connection, so nothing of the request is stored; without this
    handler each such request logged a full traceback and answered a bare 500.
    """
    first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    log.warning("database_unavailable method=%s path=%s error=%s", request.method, request.url.path, first)
    return JSONResponse({"detail": "数据库暂时不可用，请稍后重试"}, status_code=503, headers={"Retry-After": "5"})


@asynccontextmanager
async def _lifespan(app: FastAPI):
    task = asyncio.create_task(_maintenance_loop(app))
    started = []
    try:
        for service in app.state.services:
            service.start()
            started.append(service)
        yield
    finally:
        for service in reversed(started):
            service.stop()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass


async def _maintenance_loop(app: FastAPI) -> None:
    """Roll-ups and pruning; every collector wakes up, one of them (under a database lock) does the work."""
    from starlette.concurrency import run_in_threadpool

    from collector.store.retention import RetentionPolicy

    policy = RetentionPolicy.from_settings(app.state.settings)
    await asyncio.sleep(min(5.0, policy.interval_s))
    while True:
        try:
            summary = await run_in_threadpool(app.state.store.run_maintenance, policy)
            if summary:
                log.info("maintenance %s", summary)
        except Exception:  # a failed round is retried next time; it must not end the loop
            log.exception("maintenance failed")
        await asyncio.sleep(min(policy.interval_s, 300))


def _document_wire_schemas(app: FastAPI) -> None:
    """Put the wire format's own schema (from agent/wire.py) into /openapi.json."""
    base_openapi = app.openapi

    def openapi():
        if app.openapi_schema:
            return app.openapi_schema
        schema = base_openapi()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["EnrollIn"] = enroll.EnrollIn.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(components["EnrollIn"].pop("$defs", {}))
        for cls in (wire.Report, wire.ReportBatch):
            js = TypeAdapter(cls).json_schema(ref_template="#/components/schemas/{model}")
            components.update(js.pop("$defs", {}))
            components[cls.__name__] = js
        return schema

    app.openapi = openapi
