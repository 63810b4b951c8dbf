"""The FastAPI application and the one place that wires the collector's services (``create_app``)."""

from __future__ import annotations

import json
import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import TypeAdapter
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent import wire
from collector import __version__, alerts
from collector.alerts.worker import AlertWorker
from collector.api import (
    admin_people,
    admin_points,
    agentpolicy,
    agentreleases,
    audit,
    auth,
    enroll,
    evidence,
    ingest,
    metrics,
    pointadmin,
    points,
    releasepages,
    releases,
    scores,
    ui,
)
from collector.api import alerts as alerts_api
from collector.api import policies as policies_api
from collector.api import reviewpages as review_pages
from collector.api import reviews as reviews_api
from collector.api.bodylimit import BodyLimit
from collector.ingest.admission import Admission
from collector.ingest.pipeline import PointsChanged, ReportPipeline
from collector.metrics import selfmetrics
from collector.releases import rollout
from collector.scoring.scorekeeper import ScoreKeeper
from collector.settings import Settings
from collector.store import read_only_error
from collector.store.retention import RetentionPolicy
from collector.upkeep.checkpoint import WalCheckpointer
from collector.upkeep.maintenance import Maintenance

log = logging.getLogger("pointwatch.collector")


def create_app(settings: Settings, store=None) -> FastAPI:
    """The collector: its routers, and the way every report takes once the router has it.

    POST /api/v1/reports (collector/api/ingest.py)
      1. admission: refuse at once what this process cannot answer in time (``Admission``)
      2. accept: the agent's token, its own point only, parse and clean the body (collector/ingest/accept.py)
      3. derive: the collector's own results, clock skew and 人机信息相符 (collector/ingest/derive.py)
         run inside step 4's transaction, from the enrolment pins and issued policies read there
      4. store: reports, results, latest state and the hash chain in one transaction (collector/store/ingest.py)
      5. announce the points that changed (``PointsChanged``) to its consumers, each on a thread of its own:
         - the score keeper: "now" scores and the /metrics lines (collector/scoring/scorekeeper.py)
         - the alert worker: rules, pending → firing → resolved, notifications (collector/alerts/)
    Background services run for the app's lifetime, started in this order and stopped in reverse.
    """
    # docs_url=None: FastAPI's default /docs loads Swagger UI from a CDN; ours serves the vendored copy.
    app = FastAPI(title="pointwatch collector", version=__version__,
                  description="医保服务点运行监测 — collector API", docs_url=None, redoc_url=None,
                  lifespan=_lifespan)
    store = store or settings.open_store()
    alert_engine = alerts.build(store, settings)
    # One definition of "silent" for the pages, /metrics, scoring and the alert rule: the rule's own number.
    silence_intervals = alert_engine.config.rules["point_silent"].params["intervals"]

    score_keeper = ScoreKeeper(store, silence_intervals=silence_intervals)
    alert_worker = AlertWorker(alert_engine)
    admission = Admission.from_config(settings.extra.get("ingest"))
    reports = ReportPipeline(store, PointsChanged(score_keeper, alert_worker), silence_intervals=silence_intervals,
                             skew_warn_s=alert_engine.config.rules["clock_skew"].params["seconds"],
                             policy_grace_s=alert_engine.config.rules["policy_mismatch"].params["grace"],
                             heartbeat_s=admission.heartbeat_s, thresholds=alerts.value_thresholds(alert_engine.config.rules))

    release_settings = settings.agent_releases()
    reports.upgrade_failed = rollout.RolloutWatch(store, release_settings.pause_failed_share,
                                                  release_settings.pause_min_failed_points)

    app.state.settings, app.state.store = settings, store
    app.state.silence_intervals = silence_intervals
    app.state.metrics_token = settings.metrics_token()  # None: /metrics open (collector/api/metrics.py)
    app.state.admission = admission
    app.state.reports = reports
    app.state.alerts = alert_engine
    # SQLite's WAL checkpoints go first: started before the other services open connections, stopped (a
    # last checkpoint) after their last writes.
    app.state.services = [
        *([WalCheckpointer(store)] if store.is_sqlite else []),
        Maintenance(store, RetentionPolicy.from_settings(settings)),
        alert_worker,
        score_keeper,
    ]

    for module in (ingest, enroll, points, pointadmin, scores, metrics, evidence, reviews_api, ui, review_pages,
                   admin_points, admin_people, auth, audit, alerts_api, policies_api, agentpolicy, agentreleases,
                   releases, releasepages):
        app.include_router(module.router)
    app.include_router(auth.api)
    app.mount("/static", StaticFiles(directory=str(ui.WEB / "static")), name="static")

    app.add_middleware(_Timing)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        # Asked for by browsers whatever the page links (and by every non-HTML response they show): our own icon,
        # not a 404 in every page's console.
        return FileResponse(ui.WEB / "static" / "favicon.ico", media_type="image/x-icon",
                            headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request):
        # Our own page rather than FastAPI's get_swagger_ui_html, whose inline <script> the CSP forbids.
        return ui.templates.TemplateResponse(request, "docs.html", {})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        # FastAPI's default echoes each offending input back ("input"), which would put a too-long password
        # or token into the response, and cannot encode a lone surrogate (a 500). Name the field, not the value.
        detail = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")),
                   "type": str(e.get("type", ""))} for e in exc.errors()[:20]]
        return SafeJSON({"detail": detail}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def refused(request: Request, exc: StarletteHTTPException):
        # FastAPI's own handler, but a detail quoting the caller's input (a region, a duration) may hold a
        # lone surrogate, which plain UTF-8 rendering turns into a 500.
        headers = getattr(exc, "headers", None)
        if exc.status_code in (204, 304) or exc.status_code < 200:
            return Response(status_code=exc.status_code, headers=headers)
        return SafeJSON({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(DataError)
    async def unstorable(request: Request, exc: DataError):
        # The database refused a value (NUL in PostgreSQL text, an integer past the column): the input is at
        # fault, and the transaction has been rolled back. Inputs are checked before this; this is the net.
        log.warning("unstorable input on %s %s: %s", request.method, request.url.path, type(exc.orig).__name__)
        return JSONResponse({"detail": "a value in the request cannot be stored (control characters or a "
                                       "number out of range)"}, status_code=422)

    app.add_middleware(BodyLimit)  # inside SecurityHeaders, so its 413s carry the headers too
    app.add_middleware(SecurityHeaders)

    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(InterfaceError, _database_unavailable)
    _document_wire_schemas(app)
    return app


class SafeJSON(JSONResponse):
    """JSON as UTF-8, or with \\u escapes when a string cannot be encoded (a lone surrogate from the input)."""

    def render(self, content) -> bytes:
        text = json.dumps(content, ensure_ascii=False, separators=(",", ":"), default=str)
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(content, ensure_ascii=True, separators=(",", ":"), default=str).encode()


# One policy for every response (pages, API, static files, errors): nothing inline, nothing from elsewhere,
# never framed. Scripts and styles come only from /static, so an injected tag cannot run.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
       "base-uri 'self'; form-action 'self'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class _Timing:
    """Request durations by route. Plain ASGI: Starlette's @app.middleware("http") wraps every request and
    response in extra tasks and streams, a cost every ingest request would pay."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            route = scope.get("route")
            selfmetrics.REQUEST_SECONDS.labels(getattr(route, "path", "unmatched"), scope["method"]).observe(
                time.perf_counter() - t0)


class SecurityHeaders:
    """ASGI middleware: the security headers on every HTTP response, and URLs carrying NUL refused (400)
    before any handler passes them to the database."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k, v) for k, v in SECURITY_HEADERS if k not in names]
            await send(message)

        if "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b""):
            response = JSONResponse({"detail": "NUL is not allowed in a URL"}, status_code=400)
            return await response(scope, receive, send_with_headers)
        return await self.app(scope, receive, send_with_headers)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """The database went away (restart, failover, network): a clean 503 the agents retry, one log line.

    The transaction was rolled back with the connection, so nothing of the request is stored; without this
    handler each such request logged a full traceback and answered a bare 500.
    """
    first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    if read_only_error(exc):  # not "temporarily": it stays so until an administrator fixes it
        log.error("database_read_only method=%s path=%s error=%s", request.method, request.url.path, first)
        return JSONResponse({"detail": "数据库只读，无法保存，请联系管理员"}, status_code=503,
                            headers={"Retry-After": "60"})
    log.warning("database_unavailable method=%s path=%s error=%s", request.method, request.url.path, first)
    return JSONResponse({"detail": "数据库暂时不可用，请稍后重试"}, status_code=503, headers={"Retry-After": "5"})


@asynccontextmanager
async def _lifespan(app: FastAPI):
    started = []
    try:
        for service in app.state.services:
            service.start()
            started.append(service)
        yield
    finally:
        for service in reversed(started):
            service.stop()


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
        _document_errors(schema)
        return schema

    app.openapi = openapi


# Every refusal is {"detail": …}: FastAPI's own validation gives a list of {loc, msg, type}, ingest and
# enrolment a list of {field, problem}, handlers a sentence or {code, message}. The schema says exactly that
# (FastAPI's default claims a list only), and every operation documents its 4xx answers with it.
ERROR_SCHEMA = {
    "title": "Error", "type": "object", "required": ["detail"],
    "properties": {"detail": {"anyOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "object"}},
        {"type": "object"},
    ]}},
}


def _document_errors(schema: dict) -> None:
    schema["components"]["schemas"]["HTTPValidationError"] = ERROR_SCHEMA
    error = {"description": "refused; `detail` names the problem",
             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}}}
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            operation.setdefault("responses", {}).setdefault("4XX", error)
