"""POST /api/v1/reports: agents push reports here; 202 only after they are committed.

The steps, in order, are listed in collector/app.py (create_app)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from collector.api.deps import require_token
from collector.ingest.accept import IngestError, inflate, parse_reports, read_payload
from collector.metrics import selfmetrics

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
    admission = request.app.state.admission  # collector/ingest/admission.py
    arrived = admission.arrive()
    if arrived is None:  # before authentication, which costs a database look-up
        return _busy("busy")
    try:
        return await _post_reports(request, admission, arrived)
    finally:
        admission.leave()


class _TooLate(Exception):
    pass


def _busy(reason: str) -> JSONResponse:
    selfmetrics.INGEST_REJECTED.labels(reason).inc()
    return JSONResponse({"detail": "采集端繁忙，请稍后重试"}, status_code=503, headers={"Retry-After": "5"})


async def _post_reports(request: Request, admission, arrived: float):
    auth = await require_token(request)
    pipeline = request.app.state.reports  # derive, store, announce: collector/ingest/pipeline.py

    def parse_and_store(raw: bytes, encoding: str | None):
        # One worker thread for inflating, parsing (up to 8 MiB of JSON: CPU work kept off the event loop) and
        # storing: a second hand-over between threads per request cost more than the checks between them.
        if admission.too_late(arrived):  # the wait for a thread counts too
            raise _TooLate
        reports = parse_reports(inflate(raw, encoding))
        foreign = sorted({r.point_code for r in reports if r.point_code != auth.point_code})
        if foreign:
            raise IngestError(403, "wrong_point",
                              f"this token reports for point '{auth.point_code}', not {', '.join(foreign)}")
        # An enrolled token speaks for its own agent only: 人机信息相符 is judged against the fingerprint
        # pinned for the token's agent, so a report may not claim another agent's identity.
        claimed = sorted({r.agent_id for r in reports if auth.agent_id and r.agent_id != auth.agent_id})
        if claimed:
            raise IngestError(403, "wrong_agent", f"this token belongs to agent '{auth.agent_id}', not "
                                                  f"{', '.join(claimed)}")
        with selfmetrics.DB_SECONDS.labels("ingest").time():
            return pipeline.receive(reports, sender=auth.agent_id)

    try:
        if auth.role != "agent":
            raise IngestError(403, "not_agent", f"role '{auth.role}' may not send reports")
        raw, encoding = await read_payload(request), request.headers.get("content-encoding")
        accepted, duplicates = await run_in_threadpool(parse_and_store, raw, encoding)
    except IngestError as exc:
        selfmetrics.INGEST_REJECTED.labels(exc.reason).inc()
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)
    except _TooLate:
        return _busy("too_late")
    selfmetrics.REPORTS_ACCEPTED.inc(accepted)
    selfmetrics.REPORTS_DUPLICATE.inc(duplicates)
    return {"accepted": accepted, "duplicates": duplicates}
