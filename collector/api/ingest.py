"""POST /api/v1/reports: agents push reports here; 202 only after they are committed."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from collector import selfmetrics
from collector.api.deps import get_store, require_token
from collector.ingest import IngestError, parse_reports, read_payload

# Ingest requests one collector process works on at once; more are refused at once with 503 + Retry-After.
# Without a bound an overloaded collector queued thousands of requests, answered each after the agents'
# 10 s timeout, and spent its time storing reports whose senders had given up and would send them again
# (benchmarks/load.py: 7,530 timeouts in the first minute at 2,000 agents). Refused agents back off and
# send bigger batches, which cost the collector far less per report. Config: `ingest: {max_in_flight: N}`.
MAX_IN_FLIGHT = 64  # 32 gave 98 reports/s, 64 gave 121 at 2,000 agents (benchmarks/load.py)

router = APIRouter(prefix="/api/v1", tags=["ingest"])

REPORT_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"oneOf": [
            {"$ref": "#/components/schemas/Report"}, {"$ref": "#/components/schemas/ReportBatch"}]}}},
    },
    "responses": {"202": {"description": "stored: {\"accepted\": n, \"duplicates\": m}"}},
}


@router.post("/reports", status_code=202, openapi_extra=REPORT_BODY_DOC)
async def post_reports(request: Request):
    state = request.app.state
    limit = (state.settings.extra.get("ingest") or {}).get("max_in_flight", MAX_IN_FLIGHT)
    in_flight = getattr(state, "ingest_in_flight", 0)
    if in_flight >= limit:  # before authentication, which costs a database look-up
        selfmetrics.INGEST_REJECTED.labels("busy").inc()
        return JSONResponse({"detail": "采集端繁忙，请稍后重试"}, status_code=503, headers={"Retry-After": "5"})
    state.ingest_in_flight = in_flight + 1
    try:
        return await _post_reports(request)
    finally:
        state.ingest_in_flight -= 1


async def _post_reports(request: Request):
    auth = await require_token(request)
    store = get_store(request)
    try:
        if auth.role != "agent":
            raise IngestError(403, "not_agent", f"role '{auth.role}' may not send reports")
        reports = parse_reports(await read_payload(request))
        foreign = sorted({r.point_code for r in reports if r.point_code != auth.point_code})
        if foreign:
            raise IngestError(403, "wrong_point",
                              f"this token reports for point '{auth.point_code}', not {', '.join(foreign)}")
        with selfmetrics.DB_SECONDS.labels("ingest").time():
            accepted, duplicates = await run_in_threadpool(store.ingest_reports, reports)
    except IngestError as exc:
        selfmetrics.INGEST_REJECTED.labels(exc.reason).inc()
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)
    selfmetrics.REPORTS_ACCEPTED.inc(accepted)
    selfmetrics.REPORTS_DUPLICATE.inc(duplicates)
    return {"accepted": accepted, "duplicates": duplicates}
