"""The rollout of agent releases, read: ``GET /api/v1/agent-releases`` (admins and viewers) and the admin
page ``/admin/releases`` (collector/api/releasepages.py). Counts of points are confined to the caller's region; the releases held are the
collector's, the same for everyone. Pausing and resuming is ``pointwatch-collector agent-release pause|resume``
on the collector (or the collector itself, in one stage, when that stage fails: collector/releases/rollout.py)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from collector.api.deps import get_store, require_roles
from collector.releases import rollout
from collector.store import TokenInfo

router = APIRouter(tags=["agent releases"])
require_release_reader = require_roles("admin", "viewer")  # the rollout concerns those who run the fleet
REASON_CN = {
    "bad_signature": "签名校验失败", "digest_mismatch": "文件摘要不符", "size_mismatch": "文件大小不符",
    "wrong_version": "版本不符", "does_not_start": "新版本无法启动", "rolled_back": "新版本未能上报，已回退",
    "unsafe_file": "文件可被他人改写，已拒绝运行",
    "collector_unreachable": "试运行期间无法连接采集端，已回退，稍后重试",
    "unknown": "未说明",
}


@router.get("/api/v1/agent-releases")
async def agent_releases(request: Request, auth: TokenInfo = Depends(require_release_reader)):
    view = await run_in_threadpool(rollout.stats, get_store(request), auth.region_path)
    config = request.app.state.settings.agent_releases()
    return {**view, "pause_failed_share": config.pause_failed_share,
            "pause_min_failed_points": config.pause_min_failed_points}

