"""POST/PUT /api/v1/points…: an admin registers, changes and imports the points of its own region.

Thin: the checks are collector/registry/editing.py's (a point is checked as a spreadsheet row is), the
writes collector/store/'s, each audited. A point of another region answers 404, as everywhere.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, File, HTTPException, Request, UploadFile
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from agent.vocabulary import DEFAULT_PROFILE
from collector.api.bodylimit import UPLOAD_CAP
from collector.api.deps import get_store, request_actor, require_admin
from collector.registry import editing
from collector.registry.spreadsheet import ImportError_
from collector.store import StoreError, TokenInfo

router = APIRouter(prefix="/api/v1/points", tags=["points"])


class PointIn(BaseModel):
    code: str = Field(min_length=1, max_length=40)
    name: str = Field(min_length=1, max_length=200)
    region: str = Field(min_length=1, max_length=400)
    profile: str = Field(DEFAULT_PROFILE, max_length=60)
    address: str | None = Field(None, max_length=400)
    expected_devices: str | list[dict] = Field("", description="'kiosk:1, printer:2' or [{kind, count}]")
    report_interval_s: int = Field(60, ge=10, le=86400)


class PointChange(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    region: str = Field(min_length=1, max_length=400)
    profile: str = Field(DEFAULT_PROFILE, max_length=60)
    address: str | None = Field(None, max_length=400)
    expected_devices: str | list[dict] = ""
    report_interval_s: int = Field(60, ge=10, le=86400)


def _invalid(exc: editing.PointInvalid) -> HTTPException:
    return HTTPException(422, detail={"code": "invalid_point", "problems": exc.problems})


def _within_caller(region: str, info: TokenInfo) -> None:
    # As for users and tokens (collector/api/auth.py): a region beyond the caller's own is refused 403.
    problem = editing.outside_scope(region, info.region_path)
    if problem:
        raise HTTPException(403, detail={"code": "region_outside_scope", "message": problem})


@router.post("", status_code=201)
async def register_point(body: PointIn, request: Request, info: TokenInfo = Depends(require_admin)):
    """Register a new point in the caller's region (an existing code is refused: change it with PUT)."""
    _within_caller(body.region, info)
    try:
        return await run_in_threadpool(editing.register, get_store(request), body.model_dump(),
                                       request_actor(request, info), info.region_path)
    except editing.PointInvalid as exc:
        raise _invalid(exc) from None


@router.put("/{code}")
async def change_point(code: str, body: PointChange, request: Request, info: TokenInfo = Depends(require_admin)):
    """Change a point's name, region, standard, address, devices or report interval (not its code)."""
    _within_caller(body.region, info)
    try:
        return await run_in_threadpool(editing.edit, get_store(request), code, body.model_dump(),
                                       request_actor(request, info), info.region_path)
    except editing.PointInvalid as exc:
        raise _invalid(exc) from None
    except StoreError:
        raise HTTPException(404, detail="no such point") from None


@router.post("/import")
async def import_points(request: Request, file: UploadFile = File(...), dry_run: bool = False,
                        info: TokenInfo = Depends(require_admin)):
    """Import a CSV/XLSX of points (the columns `points export` writes): every row is checked first, and any
    problem refuses the whole file (422, each as 第 N 行，列 X：问题); ``dry_run`` checks without writing."""
    data = await file.read(UPLOAD_CAP + 1)
    try:
        return await run_in_threadpool(editing.import_upload, get_store(request), file.filename or "", data,
                                       request_actor(request, info), info.region_path, dry_run)
    except ImportError_ as exc:
        raise HTTPException(422, detail={"code": "invalid_file", "problems": [str(p) for p in exc.problems]}) \
            from None
