"""GET /api/v1/audit: the audit log beneath the admin's region, newest first; /verify walks the chain."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from collector.api.deps import MAX_BIGINT, get_store, require_admin
from collector.store import TokenInfo, audit

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


@router.get("")
async def audit_log(request: Request, limit: int = Query(200, ge=1, le=5000), before: int | None = Query(None, ge=1, le=MAX_BIGINT),
                    action: str | None = None, info: TokenInfo = Depends(require_admin)):
    entries = await run_in_threadpool(audit.audit_entries, get_store(request), info.region_path, limit, before, action)
    return {"entries": entries, "next_before": entries[-1]["id"] if len(entries) == limit else None}


@router.get("/verify")
async def verify(request: Request, info: TokenInfo = Depends(require_admin)):
    check = await run_in_threadpool(audit.verify_audit, get_store(request))
    return {"ok": check.ok, "entries": check.entries, "first_bad_id": check.first_bad_id,
            "problem": check.problem}
