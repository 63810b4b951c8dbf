"""/api/v1/reviews: reviewers score a point's manual items for a period; the submitted review is signed.

- ``POST /api/v1/reviews`` ``{point, from, to[, replaces]}`` → ``{id}``: open (or resume one's own draft);
  dates as in the evidence API (whole Beijing days, the ``to`` day included, or RFC 3339 instants).
- ``PUT /api/v1/reviews/{id}/items/{item}`` ``{score, note[, veto][, reason]}``: one item, saved as typed;
  ``score: null`` clears it; an automatic item takes a score only with the ``reason`` it was overridden.
- ``POST /api/v1/reviews/{id}/attachments?item=…&name=…``: the file as the request body (image or PDF).
- ``POST /api/v1/reviews/{id}/submit``: sign and close. ``GET /api/v1/reviews/{id}``: the review with
  ``total``, ``automatic``, ``manual``, ``vetoed``, ``state``; ``…/sheet.pdf``, ``…/sheet.xlsx``,
  ``…/bundle.zip`` (the signed bundle, reviewers only, as evidence exports are).
- ``GET /api/v1/reviews/summary[.xlsx]?region=…&from=…&to=…``: a review round's county summary.

Writes are the reviewer role's (监督); admins read reviews and never write them (the duty split).
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from collector.api.deps import (
    MAX_BIGINT,
    check_region,
    get_store,
    request_actor,
    requested_scope,
    require_roles,
)
from collector.review import service
from collector.store import TokenInfo
from collector.store import reviews as repo

router = APIRouter(prefix="/api/v1/reviews", tags=["reviews"])
require_reviewer = require_roles("reviewer")
require_review_reader = require_roles("reviewer", "admin")
ReviewId = PathParam(ge=1, le=MAX_BIGINT)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _file_doc(*media: str) -> dict:
    return {200: {"description": "the file", "content": {m: {"schema": {"type": "string", "format": "binary"}}
                                                          for m in media}}}


OPENED_DOC = {200: {"description": "the caller's own draft for this point and period, resumed"}}


class OpenBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    point: str = Field(min_length=1, max_length=40)
    since: str = Field(alias="from", max_length=40)
    until: str = Field(alias="to", max_length=40)
    replaces: int | None = Field(None, ge=1, le=MAX_BIGINT)


class ItemBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    score: float | None = None
    note: str | None = Field(None, max_length=4000)
    veto: bool | None = None
    reason: str | None = Field(None, max_length=2000)


def _period(since: str, until: str):
    from collector.evidence.period import PeriodError, parse_period

    try:
        return parse_period(since, until)
    except PeriodError as exc:
        raise HTTPException(422, detail=str(exc)) from None


def _key(request: Request):
    from collector.evidence.keys import load_or_create

    return load_or_create(request.app.state.settings.data_dir)


async def _call(fn, *args):
    try:
        return await run_in_threadpool(fn, *args)
    except service.ReviewError as exc:
        raise HTTPException(exc.status, detail=str(exc)) from None


async def _record(request: Request, auth: TokenInfo, review_id: int) -> repo.ReviewRecord:
    rec = await run_in_threadpool(repo.get, get_store(request), review_id)
    if rec is None:
        raise HTTPException(404, detail="no such review")
    check_region(auth, rec.region_path)  # outside the caller's region a review does not exist for them
    return rec


def _round(request: Request, auth: TokenInfo, region: str, since: str, until: str):
    scope = requested_scope(region, auth)
    if scope is None:
        raise HTTPException(404, detail="no such region")
    return scope, _period(since, until)


@router.post("", status_code=201, responses=OPENED_DOC)
async def open_review(body: OpenBody, request: Request, auth: TokenInfo = Depends(require_reviewer)):
    from collector.store import points

    store = get_store(request)
    region = await run_in_threadpool(points.point_region, store, body.point)
    if region is None:
        raise HTTPException(404, detail="no such point")
    check_region(auth, region)
    period = _period(body.since, body.until)
    rid, created = await _call(service.open_review, store, auth, request_actor(request, auth), body.point, period,
                               request.app.state.silence_intervals, body.replaces)
    rec = await run_in_threadpool(repo.get, store, rid)
    payload = {"id": rid, "created": created, "replaces": rec.replaces_id}
    return payload if created else Response(content=_json(payload), media_type="application/json", status_code=200)


def _json(payload) -> bytes:
    import json

    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


@router.get("")
async def list_reviews(request: Request, region: str = "/", point: str | None = Query(None, max_length=40),
                       since: str | None = Query(None, alias="from"), until: str | None = Query(None, alias="to"),
                       auth: TokenInfo = Depends(require_review_reader)):
    from collector.evidence.period import iso

    scope = requested_scope(region, auth)
    if scope is None:
        raise HTTPException(404, detail="no such region")
    period = _period(since, until) if since and until else None
    rows = await run_in_threadpool(repo.listing, get_store(request), scope, point,
                                   period.start if period else None, period.end if period else None)
    for r in rows:
        for k in ("period_start", "period_end", "opened_at", "submitted_at"):
            r[k] = iso(r[k])
    return {"region": scope, "reviews": rows}


@router.get("/summary")
async def round_summary(request: Request, region: str = "/", since: str = Query(..., alias="from"),
                        until: str = Query(..., alias="to"), auth: TokenInfo = Depends(require_review_reader)):
    from collector.review import summary

    scope, period = _round(request, auth, region, since, until)
    return await run_in_threadpool(summary.round_summary, get_store(request), scope, period,
                                   request.app.state.silence_intervals)


@router.get("/summary.xlsx", response_class=Response, responses=_file_doc(XLSX))
async def round_summary_xlsx(request: Request, region: str = "/", since: str = Query(..., alias="from"),
                             until: str = Query(..., alias="to"), auth: TokenInfo = Depends(require_review_reader)):
    from collector.review import summary

    scope, period = _round(request, auth, region, since, until)
    data = await run_in_threadpool(summary.summary_xlsx, get_store(request), scope, period,
                                   request.app.state.silence_intervals)
    return _download(data, XLSX, f"review-summary-{scope.replace('/', '-')}-{period.given_from}-{period.given_to}.xlsx")


@router.get("/{review_id}")
async def get_review(request: Request, review_id: int = ReviewId, auth: TokenInfo = Depends(require_review_reader)):
    rec = await _record(request, auth, review_id)
    return await run_in_threadpool(service.view, get_store(request), rec)


@router.put("/{review_id}/items/{item}")
async def put_item(body: ItemBody, request: Request, review_id: int = ReviewId,
                   item: str = PathParam(min_length=1, max_length=80), auth: TokenInfo = Depends(require_reviewer)):
    await _record(request, auth, review_id)
    return await _call(service.enter, get_store(request), request_actor(request, auth), review_id, item,
                       body.model_dump())


@router.post("/{review_id}/attachments", status_code=201)
async def add_attachment(request: Request, review_id: int = ReviewId, item: str | None = Query(None, max_length=80),
                         name: str = Query("", max_length=200), auth: TokenInfo = Depends(require_reviewer)):
    await _record(request, auth, review_id)
    data = await request.body()
    return await _call(service.attach, get_store(request), request_actor(request, auth), review_id, item, data, name)


@router.get("/{review_id}/attachments/{sha256}", response_class=Response,
            responses=_file_doc("image/jpeg", "image/png", "image/gif", "image/webp", "image/heic", "application/pdf"))
async def get_attachment(request: Request, review_id: int = ReviewId,
                         sha256: str = PathParam(pattern="^[0-9a-f]{64}$"),
                         auth: TokenInfo = Depends(require_review_reader)):
    rec = await _record(request, auth, review_id)
    meta = next((a for a in rec.attachments if a["sha256"] == sha256), None)
    if meta is None:
        raise HTTPException(404, detail="no such attachment on this review")
    data = await _call(service.blob, get_store(request), sha256)
    disposition = "inline" if meta["media_type"].startswith("image/") else "attachment"
    return Response(data, media_type=meta["media_type"],
                    headers={"Cache-Control": "private, max-age=86400", "Content-Disposition": disposition})


@router.post("/{review_id}/submit")
async def submit(request: Request, review_id: int = ReviewId, auth: TokenInfo = Depends(require_reviewer)):
    await _record(request, auth, review_id)
    key = await run_in_threadpool(_key, request)
    return await _call(service.submit, get_store(request), key, request_actor(request, auth), review_id)


@router.get("/{review_id}/bundle.zip", response_class=Response, responses=_file_doc("application/zip"))
async def bundle(request: Request, review_id: int = ReviewId, auth: TokenInfo = Depends(require_reviewer)):
    rec = await _record(request, auth, review_id)
    if rec.state != repo.SUBMITTED:
        raise HTTPException(409, detail="the review is a draft: it is signed when submitted")
    data = await _call(service.blob, get_store(request), rec.bundle_sha256)
    return _download(data, "application/zip", f"review-{rec.point_code}-{rec.id}.zip")


@router.get("/{review_id}/sheet.pdf", response_class=Response, responses=_file_doc("application/pdf"))
async def sheet_pdf(request: Request, review_id: int = ReviewId, auth: TokenInfo = Depends(require_review_reader)):
    rec = await _record(request, auth, review_id)
    data = await _call(service.sheet_file, get_store(request), rec, "sheet.pdf")
    return _download(data, "application/pdf", f"review-{rec.point_code}-{rec.id}.pdf")


@router.get("/{review_id}/sheet.xlsx", response_class=Response, responses=_file_doc(XLSX))
async def sheet_xlsx(request: Request, review_id: int = ReviewId, auth: TokenInfo = Depends(require_review_reader)):
    rec = await _record(request, auth, review_id)
    data = await _call(service.sheet_file, get_store(request), rec, "sheet.xlsx")
    return _download(data, XLSX, f"review-{rec.point_code}-{rec.id}.xlsx")


def _download(data: bytes, media_type: str, name: str) -> Response:
    return Response(data, media_type=media_type,
                    headers={"Content-Disposition": f"attachment; filename=\"review\"; filename*=UTF-8''{quote(name)}"})
