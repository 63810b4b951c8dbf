"""The admin page of agent releases (代理升级): what the JSON ``GET /api/v1/agent-releases`` says, in Chinese."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from collector.api.deps import get_store, require_page_admin
from collector.api.releases import REASON_CN
from collector.api.ui import render
from collector.releases import rollout
from collector.store import TokenInfo

router = APIRouter(include_in_schema=False)


@router.get("/admin/releases", response_class=HTMLResponse)
async def releases_page(request: Request, info: TokenInfo = Depends(require_page_admin)):
    view = await run_in_threadpool(rollout.stats, get_store(request), info.region_path)
    return render(request, "admin_releases.html", {
        "releases": view["releases"], "reason_cn": REASON_CN,
        "pause_failed_share": request.app.state.settings.agent_releases().pause_failed_share,
        "pause_min_failed_points": request.app.state.settings.agent_releases().pause_min_failed_points}, nav="admin")
