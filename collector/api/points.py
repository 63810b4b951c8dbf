"""GET /api/v1/points…: the registry and each point's latest results and history, scoped by region."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from starlette.concurrency import run_in_threadpool

from collector.api.deps import MOMENT_DOC, check_region, get_store, moment, requested_scope, require_reader
from collector.api.views import point_json, result_json
from collector.store import TokenInfo, queries

router = APIRouter(prefix="/api/v1/points", tags=["points"])


def _period(given_from: str | None, given_to: str | None, default: timedelta) -> tuple[datetime, datetime]:
    until = moment(given_to, "to", end=True) or datetime.now(timezone.utc)
    since = moment(given_from, "from") or until - default
    if since >= until:
        raise HTTPException(422, detail="'from' must be before 'to'")
    return since, until


async def _visible_point(request: Request, code: str, auth: TokenInfo):
    summary = await run_in_threadpool(queries.point_summary, get_store(request), code, None, request.app.state.silence_intervals)
    if summary is None:
        raise HTTPException(404, detail="no such point")
    check_region(auth, summary.region_path)
    return summary


@router.get("")
async def list_points(request: Request, region: str = "/", auth: TokenInfo = Depends(require_reader)):
    scope = requested_scope(region, auth)
    points = [] if scope is None else await run_in_threadpool(queries.list_points, get_store(request), scope, None, request.app.state.silence_intervals)
    return {"points": [point_json(p) for p in points]}


@router.get("/{code}")
async def get_point(code: str, request: Request, auth: TokenInfo = Depends(require_reader)):
    summary = await _visible_point(request, code, auth)
    latest = await run_in_threadpool(queries.latest_for_point, get_store(request), code)
    return {**point_json(summary), "results": [result_json(r) for r in latest]}


@router.get("/{code}/results")
async def get_results(code: str, request: Request, check: str | None = None,
                      since: str | None = Query(None, alias="from", description=MOMENT_DOC),
                      until: str | None = Query(None, alias="to", description=MOMENT_DOC),
                      limit: int = Query(5000, ge=1, le=50000), auth: TokenInfo = Depends(require_reader)):
    await _visible_point(request, code, auth)
    start, end = _period(since, until, timedelta(hours=24))
    rows = await run_in_threadpool(queries.point_results, get_store(request), code, start, end, check, limit)
    return {"point": code, "from": start, "to": end, "results": [result_json(r) for r in rows]}


@router.get("/{code}/reports")
async def get_reports(code: str, request: Request, since: str | None = Query(None, alias="from", description=MOMENT_DOC),
                      until: str | None = Query(None, alias="to", description=MOMENT_DOC), limit: int = Query(10000, ge=1, le=100000),
                      auth: TokenInfo = Depends(require_reader)):
    await _visible_point(request, code, auth)
    start, end = _period(since, until, timedelta(hours=24))
    rows = await run_in_threadpool(queries.reports_for_point, get_store(request), code, start, end, limit)
    return {"point": code, "from": start, "to": end, "reports": rows}
