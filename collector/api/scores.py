"""GET /api/v1/scores: a region's points ranked against their profiles; /api/v1/scores/{code}: one sheet."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from starlette.concurrency import run_in_threadpool

from collector.api.deps import MOMENT_DOC, check_region, get_store, moment, requested_scope, require_reader
from collector.scoring import scores
from collector.store import TokenInfo, queries

router = APIRouter(prefix="/api/v1/scores", tags=["scores"])


def ranking_json(result: scores.RegionScores) -> dict:
    return {
        "region": result.scope,
        "from": result.start, "to": result.end,
        "ranking": [{
            "rank": r.rank, "code": r.code, "name": result.points[r.code].name,
            "region": result.points[r.code].region_path, "profile": r.sheet.profile,
            "earned": r.sheet.earned, "automatic_points": r.sheet.automatic_points, "total": r.sheet.total,
            "share": round(r.sheet.share, 4),
        } for r in result.ranking],
        "item_pass_rates": {
            profile: [{"item": item_id, "title": title, "met": met, "points": n,
                       "rate": round(met / n, 4) if n else None}
                      for item_id, (title, met, n) in items.items()]
            for profile, items in result.item_rates.items()},
    }


@router.get("")
async def region_scores(request: Request, region: str = "/",
                        since: str | None = Query(None, alias="from", description=MOMENT_DOC),
                        until: str | None = Query(None, alias="to", description=MOMENT_DOC), by: str = Query("share", pattern="^(points|share)$"),
                        auth: TokenInfo = Depends(require_reader)):
    scope = requested_scope(region, auth)
    if scope is None:
        raise HTTPException(404, detail="no such region")
    try:
        result = await run_in_threadpool(scores.region_scores, get_store(request), scope, moment(since, "from"),
                                         moment(until, "to", end=True), by,
                                         request.app.state.silence_intervals)
    except scores.ScoreError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    return ranking_json(result)


@router.get("/{code}")
async def point_scores(code: str, request: Request,
                       since: str | None = Query(None, alias="from", description=MOMENT_DOC),
                       until: str | None = Query(None, alias="to", description=MOMENT_DOC), auth: TokenInfo = Depends(require_reader)):
    store = get_store(request)
    point = await run_in_threadpool(queries.point_summary, store, code, None, request.app.state.silence_intervals)
    if point is None:
        raise HTTPException(404, detail="no such point")
    check_region(auth, point.region_path)
    start, end = moment(since, "from"), moment(until, "to", end=True)
    try:
        sheet = await run_in_threadpool(scores.point_sheet, store, code, start, end,
                                        request.app.state.silence_intervals)
    except scores.ScoreError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    return {"point": code, **sheet.as_dict()}
