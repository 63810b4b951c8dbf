"""POST /api/v1/reports: agents push reports here; 202 only after they are committed."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from collector import selfmetrics
from collector.api.deps import get_store, require_token
from collector.ingest import IngestError, parse_reports, read_payload
from collector.store import TokenInfo

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
async def post_reports(request: Request, auth: TokenInfo = Depends(require_token)):
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
