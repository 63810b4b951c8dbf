"""Server-rendered pages in Chinese; every asset is served from /static by the collector itself."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from collector import __version__, scores
from collector.api.deps import get_store
from collector.regions import RegionError, ancestors, normalize_path, split_path
from collector.store.overview import FAMILIES, STATES, OverviewQuery
from collector.web import labels

WEB = Path(__file__).resolve().parents[1] / "web"
templates = Jinja2Templates(directory=str(WEB / "templates"))
router = APIRouter(include_in_schema=False)

LIVE_SECONDS = 15
RANGES = (("24h", "24 小时", timedelta(hours=24)), ("7d", "7 天", timedelta(days=7)),
          ("30d", "30 天", timedelta(days=30)))
VIOLATIONS = (("isolation", "专网违规"), ("identity", "专机异常"), ("usage", "专用违规"),
              ("core", "核心网络不通"), ("device", "设备缺失或故障"))


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
templates.env.globals.update(
    version=__version__, state_label=labels.STATE_LABEL, status_label=labels.STATUS_LABEL,
    check_label=labels.CHECK_LABEL, device_label=labels.DEVICE_LABEL, profile_label=labels.PROFILE_LABEL,
    role_label=labels.ROLE_LABEL, supply_state=labels.SUPPLY_STATE)


def page_user(request: Request):
    """Who is looking at the page; the pages' region scope follows from it."""
    return getattr(request.state, "user", None)


def render(request: Request, template: str, context: dict, nav: str | None = None, live: int = 0):
    return templates.TemplateResponse(request, template, {"user": page_user(request), "nav": nav, "live": live,
                                                          **context})


def crumbs(path: str) -> list[tuple[str, str]]:
    return [(p, split_path(p)[-1]) for p in ancestors(path)]


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request, region: str = "/", state: str = "", family: str = "", device: str = "",
                   q: str = "", page: int = 1):
    try:
        scope = normalize_path(region)
    except RegionError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    query = OverviewQuery(scope=scope, state=state or None, family=family or None, device_kind=device or None,
                          search=q[:100] or None, page=max(1, page))
    ov = await run_in_threadpool(get_store(request).overview, query)
    current = {"region": scope, "state": state, "family": family, "device": device, "q": q, "page": query.page}

    def url(**changes) -> str:
        params = {**current, **changes}
        return "/?" + urlencode({k: v for k, v in params.items() if v not in (None, "", "/") and
                                 not (k == "page" and v == 1)})

    return render(request, "index.html", {
        "ov": ov, "q": query, "url": url, "crumbs": crumbs(ov.common_region), "states": STATES, "families": FAMILIES,
        "device_kinds": labels.DEVICE_LABEL, "violation_labels": VIOLATIONS}, nav="overview", live=LIVE_SECONDS)


@router.get("/points/{code}", response_class=HTMLResponse)
async def point_page(code: str, request: Request):
    store = get_store(request)
    point = await run_in_threadpool(store.point_summary, code)
    if point is None:
        raise HTTPException(404, detail="没有这个服务点")
    results = await run_in_threadpool(store.latest_for_point, code)
    by_family: dict[str, list] = defaultdict(list)
    for r in results:
        by_family[labels.family_of(r.check)].append(r)
    pillar_state = {key: _worst([r.status for r in by_family[key]]) for key, _, _ in labels.PILLARS}
    try:
        sheet = await run_in_threadpool(scores.point_sheet, store, code)
    except scores.ScoreError:
        sheet = None  # a point on an unknown profile still shows its checks
    return render(request, "point.html", {
        "point": point, "by_family": by_family, "pillars": labels.PILLARS, "pillar_state": pillar_state,
        "sheet": sheet,
        "crumbs": crumbs(point.region_path), "ranges": [(k, label) for k, label, _ in RANGES]},
        live=LIVE_SECONDS)


@router.get("/scores", response_class=HTMLResponse)
async def scores_page(request: Request, region: str = "/", since: str = Query("", alias="from"),
                      until: str = Query("", alias="to")):
    from collector.timeutil import parse_moment

    error = None
    try:
        scope = normalize_path(region)
        start = parse_moment(since) if since else None
        end = parse_moment(until, end_of_day=True) if until else None
        result = await run_in_threadpool(scores.region_scores, get_store(request), scope, start, end, "share")
    except (ValueError, scores.ScoreError) as exc:
        error = f"无法计算：{exc}"
        result = await run_in_threadpool(scores.region_scores, get_store(request), "/", None, None, "share")
        scope = "/"
    return render(request, "scores.html", {"result": result, "scope": scope, "since": since, "until": until,
                                           "error": error}, nav="scores")


@router.get("/ui/points/{code}/series")
async def point_series(code: str, request: Request, range: str = "24h", check: str = "net.core.icmp"):
    span = next((d for k, _, d in RANGES if k == range), None)
    if span is None:
        raise HTTPException(422, detail=f"range must be one of {', '.join(k for k, _, _ in RANGES)}")
    store = get_store(request)
    if await run_in_threadpool(store.point_summary, code) is None:
        raise HTTPException(404, detail="没有这个服务点")
    until = datetime.now(timezone.utc)
    return await run_in_threadpool(store.check_series, code, check, until - span, until)


def _worst(statuses: list[str]) -> str:
    for status in ("error", "fail", "warn", "ok"):
        if status in statuses:
            return status
    return "none"
