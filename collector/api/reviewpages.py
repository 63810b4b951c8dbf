"""The review pages (评审), phone-width first: ``/reviews`` lists a region's reviews and opens one;
``/reviews?id=N`` is the review itself — the reviewer's own draft as a form that saves every item as it is
typed (collector/web/static/review.js keeps what could not be sent and sends it when the line is back),
or, submitted or someone else's, the final sheet with both verdicts where the reviewer overrode one.

Reviewers and admins only (admins read); anonymous visitors go to the login page.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from collector.api.deps import MAX_BIGINT, check_region, get_store, require_page_reader
from collector.api.ui import page_user, render, scoped
from collector.review import lines, service
from collector.review.finalsheet import MODE_CN, VERDICT_CN, monitor_cell, remark, sum_sentence, who
from collector.store import TokenInfo, queries
from collector.store import reviews as repo

REVIEW_ROLES = ("reviewer", "admin")


async def require_review_page(request: Request) -> TokenInfo:
    info = await require_page_reader(request)
    if info.role not in REVIEW_ROLES:
        raise HTTPException(403, detail=f"role '{info.role}' may not do this (needs reviewer or admin)")
    return info


require_review_page.roles = REVIEW_ROLES  # read by the role-matrix test
router = APIRouter(include_in_schema=False, dependencies=[Depends(require_review_page)])


@router.get("/reviews", response_class=HTMLResponse)
async def reviews_page(request: Request, id: int | None = Query(None, ge=1, le=MAX_BIGINT), region: str = "/"):
    store = get_store(request)
    user = page_user(request)
    auth = request.state.auth
    if id is not None:
        rec = await run_in_threadpool(repo.get, store, id)
        if rec is None:
            raise HTTPException(404, detail="no such review")
        check_region(auth, rec.region_path)
        view = await run_in_threadpool(service.view, store, rec)
        ls = lines.lines(rec.frozen, rec.entries, view["attachments"])
        editable = rec.state == repo.DRAFT and auth.role == "reviewer" and rec.reviewer == user.actor
        return render(request, "review.html", {
            "r": view, "lines": ls, "editable": editable, "may_correct": auth.role == "reviewer"
            and rec.state == repo.SUBMITTED and view["current"], "sum_sentence": sum_sentence(view),
            "who": who(rec.identity), "monitor_cell": monitor_cell, "remark": remark, "mode_cn": MODE_CN,
            "verdict_cn": VERDICT_CN, "scoring": (rec.frozen.get("sheet") or {}).get("scoring", "points")},
            nav="reviews")
    scope = scoped(region, user)
    rows = await run_in_threadpool(repo.listing, store, scope)
    pts = await run_in_threadpool(queries.list_points, store, scope, None, request.app.state.silence_intervals)
    return render(request, "reviews.html", {"rows": rows, "points": pts[:2000], "scope": scope,
                                            "may_open": auth.role == "reviewer"}, nav="reviews")
