"""Server-rendered pages in Chinese; every asset is served from /static by the collector itself."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from collector import __version__
from collector.api.deps import get_store
from collector.store.queries import STATE_ORDER

WEB = Path(__file__).resolve().parents[1] / "web"
templates = Jinja2Templates(directory=str(WEB / "templates"))
router = APIRouter(include_in_schema=False)

STATE_LABEL = {"silent": "失联", "error": "检查出错", "fail": "不合格", "warn": "警告", "ok": "正常"}
STATUS_LABEL = {"ok": "正常", "warn": "警告", "fail": "不合格", "error": "错误"}
CHECK_LABEL = {
    "net.core.icmp": "核心网络连通（ICMP）", "net.core.tcp": "医保平台端口", "net.core.dns": "域名解析",
    "net.core.https": "网上办理渠道", "isolation.internet": "专网：互联网隔离", "isolation.interfaces": "专网：网卡与路由",
    "identity.fingerprint": "专机：终端标识", "usage.processes": "专用：禁用软件",
    "usage.removable_media": "专用：移动存储", "usage.listening_ports": "专用：监听端口",
    "usage.accounts": "专用：登录账号", "host.resources": "终端资源",
}


def ago(ts: datetime | None) -> str:
    if ts is None:
        return "从未"
    ts = ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
    seconds = int((datetime.now(timezone.utc) - ts).total_seconds())
    if seconds < 60:
        return f"{max(seconds, 0)} 秒前"
    if seconds < 3600:
        return f"{seconds // 60} 分钟前"
    if seconds < 86400:
        return f"{seconds // 3600} 小时前"
    return f"{seconds // 86400} 天前"


def fmtvalue(value, unit) -> str:
    from agent.cli import format_value

    return format_value(value, unit)


templates.env.filters["ago"] = ago
templates.env.filters["fmtvalue"] = fmtvalue
templates.env.globals.update(version=__version__, state_label=STATE_LABEL, status_label=STATUS_LABEL,
                             check_label=CHECK_LABEL)


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request):
    points = await run_in_threadpool(get_store(request).list_points, "/")
    points.sort(key=lambda p: (STATE_ORDER[p.worst], p.code))
    totals = sorted(Counter(p.worst for p in points).items(), key=lambda kv: STATE_ORDER[kv[0]])
    return templates.TemplateResponse(request, "index.html", {"points": points, "totals": totals, "refresh": 30})


@router.get("/points/{code}", response_class=HTMLResponse)
async def point_page(code: str, request: Request):
    store = get_store(request)
    point = await run_in_threadpool(store.point_summary, code)
    if point is None:
        raise HTTPException(404, detail="no such point")
    results = await run_in_threadpool(store.latest_for_point, code)
    return templates.TemplateResponse(request, "point.html", {"point": point, "results": results, "refresh": 30})
