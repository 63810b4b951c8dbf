"""Administration pages, points: register and change a point, upload the points spreadsheet, issue a PC's
enrolment code. For admins within their region; every action audited by the store, and protected as every
form is (the session and its CSRF token: collector/api/csrf.py, checked by the role dependency).

Thin: the rules are collector/registry/editing.py's and collector/accounts/codes.py's, the same the JSON
API (collector/api/pointadmin.py, auth.py) calls.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from agent.vocabulary import DEFAULT_PROFILE, PROFILE_NAMES
from collector.accounts import codes
from collector.api.bodylimit import UPLOAD_CAP
from collector.api.deps import get_store, request_actor, require_page_admin
from collector.api.ui import render
from collector.registry import editing
from collector.registry.spreadsheet import ImportError_
from collector.store import StoreError, TokenInfo, queries
from collector.store import points as points_repo

router = APIRouter(include_in_schema=False)
SHOWN = 300  # points listed at once; the search narrows the rest
# What a page holding a secret (an enrolment code) must not leave behind: no cache, no referrer.
SECRET_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _back(path: str, **params) -> RedirectResponse:
    return RedirectResponse(path + ("?" + urlencode(params) if params else ""), status_code=303)


@router.get("/admin/points", response_class=HTMLResponse)
async def points_page(request: Request, q: str = "", notice: str = "", info: TokenInfo = Depends(require_page_admin)):
    rows = await run_in_threadpool(queries.list_points, get_store(request), info.region_path, None,
                                   request.app.state.silence_intervals)
    q = q.strip()[:100]
    if q:
        rows = [p for p in rows if q in p.code or q in p.name or q in p.region_path]
    return render(request, "admin_points.html", {
        "points": rows[:SHOWN], "total": len(rows), "shown": SHOWN, "q": q, "notice": notice[:200],
        "max_rows": editing.MAX_UPLOAD_ROWS}, nav="admin")


# A form answered with its problems is a page like any other (200): a 4xx document is a console error in
# every browser, and the page says plainly what was refused.
def _form_page(request: Request, values: dict, problems: dict, editing_code: str | None):
    return render(request, "admin_point_form.html", {
        "values": values, "problems": problems, "editing": editing_code, "labels": editing.FIELD_CN,
        "profiles": PROFILE_NAMES}, nav="admin")


@router.get("/admin/points/new", response_class=HTMLResponse)
async def new_point_page(request: Request, info: TokenInfo = Depends(require_page_admin)):
    region = "" if info.region_path == "/" else info.region_path + "/"
    return _form_page(request, {"region": region, "profile": DEFAULT_PROFILE, "report_interval_s": 60}, {}, None)


def _fields(code: str, name: str, region: str, profile: str, address: str, expected_devices: str,
            report_interval_s: str) -> dict:
    return {"code": code, "name": name, "region": region, "profile": profile, "address": address,
            "expected_devices": expected_devices, "report_interval_s": report_interval_s}


@router.post("/admin/points")
async def register_point(request: Request, code: str = Form(""), name: str = Form(""), region: str = Form(""),
                         profile: str = Form(DEFAULT_PROFILE), address: str = Form(""),
                         expected_devices: str = Form(""), report_interval_s: str = Form("60"),
                         info: TokenInfo = Depends(require_page_admin)):
    fields = _fields(code, name, region, profile, address, expected_devices, report_interval_s)
    try:
        saved = await run_in_threadpool(editing.register, get_store(request), fields, request_actor(request, info),
                                        info.region_path)
    except editing.PointInvalid as exc:
        return _form_page(request, fields, exc.problems, None)
    return _back("/admin/points", q=saved["code"], notice=f"服务点 {saved['code']}（{saved['name']}）已登记")


@router.get("/admin/points/{code}/edit", response_class=HTMLResponse)
async def edit_point_page(code: str, request: Request, info: TokenInfo = Depends(require_page_admin)):
    record = await run_in_threadpool(points_repo.point_record, get_store(request), code, info.region_path)
    if record is None:
        raise HTTPException(404, detail="没有这个服务点")
    devices = ", ".join(f"{d['kind']}:{d['count']}" for d in record["expected_devices"])
    return _form_page(request, {**record, "expected_devices": devices}, {}, code)


@router.post("/admin/points/{code}/edit")
async def change_point(code: str, request: Request, name: str = Form(""), region: str = Form(""),
                       profile: str = Form(DEFAULT_PROFILE), address: str = Form(""),
                       expected_devices: str = Form(""), report_interval_s: str = Form("60"),
                       info: TokenInfo = Depends(require_page_admin)):
    fields = _fields(code, name, region, profile, address, expected_devices, report_interval_s)
    try:
        await run_in_threadpool(editing.edit, get_store(request), code, fields, request_actor(request, info),
                                info.region_path)
    except editing.PointInvalid as exc:
        return _form_page(request, fields, exc.problems, code)
    except StoreError:
        raise HTTPException(404, detail="没有这个服务点") from None
    return _back("/admin/points", q=code, notice=f"服务点 {code} 的登记信息已修改")


@router.post("/admin/points/import", response_class=HTMLResponse)
async def import_points(request: Request, file: UploadFile = File(...), dry_run: str = Form(""),
                        info: TokenInfo = Depends(require_page_admin)):
    data = await file.read(UPLOAD_CAP + 1)
    name = (file.filename or "")[:200]
    problems, counts = [], None
    try:
        counts = await run_in_threadpool(editing.import_upload, get_store(request), name, data,
                                         request_actor(request, info), info.region_path, bool(dry_run))
    except ImportError_ as exc:
        problems = [str(p) for p in exc.problems]
    return render(request, "admin_import.html", {"filename": name, "problems": problems, "counts": counts},
                  nav="admin")


@router.post("/admin/points/{code}/enroll-code", response_class=HTMLResponse)
async def enroll_code(code: str, request: Request, info: TokenInfo = Depends(require_page_admin)):
    url = codes.collector_url(request.app.state.settings, str(request.base_url))
    try:
        issued = await run_in_threadpool(codes.issue, get_store(request), code, url, request_actor(request, info),
                                         info.region_path)
    except StoreError:
        raise HTTPException(404, detail="没有这个服务点") from None
    summary = await run_in_threadpool(queries.point_summary, get_store(request), code, None,
                                      request.app.state.silence_intervals)
    response = render(request, "admin_enroll.html", {"issued": issued, "point": summary, "collector": url},
                      nav="admin")
    response.headers.update(SECRET_HEADERS)
    return response
