"""The FastAPI application: routers are thin, logic lives in plain modules, the store behind one seam."""

from __future__ import annotations

import logging
import time

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from pydantic import TypeAdapter

from agent import wire
from collector import __version__, selfmetrics
from collector.api import enroll, ingest, metrics, points, ui
from collector.settings import Settings

log = logging.getLogger("pointwatch.collector")


def create_app(settings: Settings, store=None) -> FastAPI:
    app = FastAPI(title="pointwatch collector", version=__version__,
                  description="医保服务点运行监测 — collector API")
    app.state.settings = settings
    app.state.store = store or settings.open_store()
    for module in (ingest, enroll, points, metrics, ui):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=str(ui.WEB / "static")), name="static")

    @app.middleware("http")
    async def timing(request: Request, call_next):
        t0 = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        selfmetrics.REQUEST_SECONDS.labels(getattr(route, "path", "unmatched"), request.method).observe(
            time.perf_counter() - t0)
        return response

    _document_wire_schemas(app)
    return app


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
