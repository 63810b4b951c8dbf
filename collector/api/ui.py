"""Server-rendered pages in Chinese; every asset is served from /static by the collector itself."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from agent.vocabulary import AGENT_POLICY, NET_CORE_ICMP, POINT_STATES, worst
from collector import __version__
from collector.api import csrf
from collector.api.deps import MAX_BIGINT, MAX_ID, SESSION_COOKIE, actor_name, get_store, require_page_reader
from collector.api.deps import require_page_admin as page_admin
from collector.registry.regions import RegionError, ancestors, confine, is_within, split_path
from collector.scoring import scores
from collector.scoring.profiles import level_of
from collector.store import audit, queries, series
from collector.store import overview as overview_repo
from collector.store.overview import FAMILIES, OverviewQuery
from collector.timeutil import china_time
from collector.web import labels
from collector.web.item_text import item_basis
from collector.web.rule_text import item_sentence

WEB = Path(__file__).resolve().parents[1] / "web"
templates = Jinja2Templates(directory=str(WEB / "templates"))
# Every page needs a signed-in viewer, reviewer or admin; anonymous visitors are sent to /login, and {code}
# pages outside the user's region answer 404 (require_page_reader does both).
router = APIRouter(include_in_schema=False, dependencies=[Depends(require_page_reader)])

LIVE_SECONDS = 15
RANGES = (("24h", "24 小时", timedelta(hours=24)), ("7d", "7 天", timedelta(days=7)),
          ("30d", "30 天", timedelta(days=30)))
# The overview's family filter: key -> (check id prefix, what people read).
FAMILY_CN = {"core": "核心网络", "isolation": "专网", "identity": "专机", "usage": "专用", "device": "设备",
             "host": "终端资源"}
FAMILY_FILTERS = {key: (prefix, FAMILY_CN[key]) for key, prefix in FAMILIES.items()}
VIOLATIONS = (("isolation", "专网违规"), ("identity", "专机异常"), ("usage", "专用违规"),
              ("core", "核心网络不通"), ("device", "设备缺失或故障"))


def ago(ts: datetime | None) -> str:
    if ts is None:
        return "从未"
    ts = ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
    return labels.duration_cn((datetime.now(timezone.utc) - ts).total_seconds()) + "前"


def fmtvalue(value, unit) -> str:
    from agent.cli import format_value

    return format_value(value, unit)


def cst(ts) -> str:
    """Month, day and time in China time, for tables."""
    return china_time(ts, "%m-%d %H:%M") or "—"


templates.env.filters["ago"] = ago
templates.env.filters["cst"] = cst
templates.env.filters["fmtvalue"] = fmtvalue


def rule_cn(profile_name: str, item_id: str) -> str:
    """A profile item's rule as a Chinese sentence, for the templates ("" for manual or unknown items)."""
    return item_sentence(scores.profiles().get(profile_name), item_id)


def basis_cn(profile_name: str, item, region_path: str) -> str:
    """The 依据 of a sheet item, worded as the signed evidence sheet words it (collector/web/item_text.py)."""
    profile = scores.profiles().get(profile_name)
    try:
        spec = profile.item(item.id) if profile is not None else None
    except KeyError:
        spec = None
    return item_basis(item, spec, level_of(region_path))


templates.env.globals.update(
    rule_cn=rule_cn, basis_cn=basis_cn, version=__version__, state_label=labels.STATE_LABEL, status_label=labels.STATUS_LABEL,
    check_label=labels.CHECK_LABEL, device_label=labels.DEVICE_LABEL, profile_label=labels.PROFILE_LABEL,
    role_label=labels.ROLE_LABEL, supply_state=labels.SUPPLY_STATE)
# Every state-changing form renders {{ csrf_token(request) }} as its hidden csrf_token field (collector/api/csrf.py).
templates.env.globals["csrf_token"] = lambda request: csrf.session_token(request.cookies.get(SESSION_COOKIE))


@dataclass(frozen=True)
class PageUser:
    name: str
    role: str
    region_path: str
    actor: str = ""  # as the audit log names this person (deps.actor_name)


def page_user(request: Request) -> PageUser | None:
    """Who is looking at the page (set by require_page_reader); the pages' region scope follows from it."""
    auth = getattr(request.state, "auth", None)
    if auth is None:
        return None
    return PageUser(auth.actor.split(":", 1)[-1] or auth.role, auth.role, auth.region_path, actor_name(auth))


def scoped(requested: str, user: PageUser) -> str:
    """The region asked for, confined to the user's own; a region elsewhere shows the user's own."""
    return confine(requested, user.region_path) or user.region_path


def render(request: Request, template: str, context: dict, nav: str | None = None, live: int = 0):
    return templates.TemplateResponse(request, template, {"user": page_user(request), "nav": nav, "live": live,
                                                          **context})


def crumbs(path: str) -> list[tuple[str, str]]:
    return [(p, split_path(p)[-1]) for p in ancestors(path)]


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request, region: str = "/", state: str = "", family: str = "", device: str = "",
                   q: str = "", page: int = Query(1, ge=1, le=100_000)):
    try:
        scope = scoped(region, page_user(request))
    except RegionError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    query = OverviewQuery(scope=scope, state=state or None, family=family or None, device_kind=device or None,
                          search=q[:100] or None, page=max(1, page))
    ov = await run_in_threadpool(overview_repo.overview, get_store(request), query)
    current = {"region": scope, "state": state, "family": family, "device": device, "q": q, "page": query.page}

    def url(**changes) -> str:
        params = {**current, **changes}
        return "/?" + urlencode({k: v for k, v in params.items() if v not in (None, "", "/") and
                                 not (k == "page" and v == 1)})

    return render(request, "index.html", {
        "ov": ov, "q": query, "url": url, "crumbs": crumbs(ov.common_region), "states": POINT_STATES,
        "families": FAMILY_FILTERS,
        "device_kinds": labels.DEVICE_LABEL, "violation_labels": VIOLATIONS}, nav="overview", live=LIVE_SECONDS)


@router.get("/points/{code}", response_class=HTMLResponse)
async def point_page(code: str, request: Request):
    store = get_store(request)
    point = await run_in_threadpool(queries.point_summary, store, code, None, request.app.state.silence_intervals)
    if point is None:
        raise HTTPException(404, detail="没有这个服务点")
    results = await run_in_threadpool(queries.latest_for_point, store, code)
    by_family: dict[str, list] = defaultdict(list)
    for r in results:
        by_family[labels.family_of(r.check)].append(r)
    pillar_state = {key: _worst([r.status for r in by_family[key]]) for key, _, _ in labels.PILLARS}
    try:
        sheet = await run_in_threadpool(scores.point_sheet, store, code, None, None,
                                        request.app.state.silence_intervals)
    except scores.ScoreError:
        sheet = None  # a point on an unknown profile still shows its checks
    return render(request, "point.html", {
        "point": point, "by_family": by_family, "pillars": labels.PILLARS, "pillar_state": pillar_state,
        "sheet": sheet,
        "crumbs": crumbs(point.region_path), "ranges": [(k, label) for k, label, _ in RANGES]},
        live=LIVE_SECONDS)


@router.get("/points/{code}/policy", response_class=HTMLResponse)
async def point_policy_page(code: str, request: Request):
    """The point's effective policy, where each setting comes from, and what its agent last ran and fetched."""
    from collector.api.policies import point_view
    from collector.policy.documents import settings_of

    store = get_store(request)
    point = await run_in_threadpool(queries.point_summary, store, code, None, request.app.state.silence_intervals)
    view = await run_in_threadpool(point_view, store, code)
    if point is None or view is None:
        raise HTTPException(404, detail="没有这个服务点")
    latest = [r for r in await run_in_threadpool(queries.latest_for_point, store, code) if r.check == AGENT_POLICY]
    return render(request, "policy.html", {
        "point": point, "view": view, "settings": settings_of(view["policy"] or {}, view["origin"]),
        "verdict": latest[0] if latest else None, "crumbs": crumbs(point.region_path)})


@router.get("/scores", response_class=HTMLResponse)
async def scores_page(request: Request, region: str = "/", since: str = Query("", alias="from"),
                      until: str = Query("", alias="to")):
    from collector.timeutil import parse_moment

    error = None
    try:
        scope = scoped(region, page_user(request))
        start = parse_moment(since) if since else None
        end = parse_moment(until, end_of_day=True) if until else None
        result = await run_in_threadpool(scores.region_scores, get_store(request), scope, start, end, "share",
                                         request.app.state.silence_intervals)
    except (ValueError, scores.ScoreError) as exc:
        error = f"无法计算：{exc}"
        scope = page_user(request).region_path
        result = await run_in_threadpool(scores.region_scores, get_store(request), scope, None, None, "share",
                                         request.app.state.silence_intervals)
    return render(request, "scores.html", {"result": result, "scope": scope, "since": since, "until": until,
                                           "error": error}, nav="scores")


ALERT_TABS = (("open", "当前告警"), ("firing", "已触发"), ("pending", "待确认"), ("resolved", "已恢复"))
ALERT_STATE_LABEL = {"firing": "告警中", "pending": "待确认", "resolved": "已恢复"}
ALERT_STATE_CLASS = {"firing": "s-fail", "pending": "s-warn", "resolved": "s-ok"}
NOTIFY_LABEL = {"sent": "已发送", "queued": "排队重试", "sending": "发送中", "failed": "发送失败"}


@router.get("/alerts", response_class=HTMLResponse)
async def alerts_page(request: Request, state: str = "open", notice: str = "", error: str = ""):
    from collector.alerts.rules import TITLES
    from collector.api.alerts import alert_views
    from collector.store.alerts import list_silences

    if state not in dict(ALERT_TABS):
        state = "open"
    store, engine = get_store(request), request.app.state.alerts
    scope = page_user(request).region_path
    alerts = await run_in_threadpool(alert_views, engine, store, scope, state, None, 500)
    silences = await run_in_threadpool(list_silences, store, scope, engine.clock())
    user = page_user(request)
    return render(request, "alerts.html", {
        "alerts": alerts, "silences": silences, "state": state, "tabs": ALERT_TABS, "rule_titles": TITLES,
        "alert_state_label": ALERT_STATE_LABEL, "alert_state_class": ALERT_STATE_CLASS, "notify_label": NOTIFY_LABEL,
        "is_admin": bool(user and user.role == "admin"), "notice": notice[:200], "error": error[:200]},
        nav="alerts", live=LIVE_SECONDS)


async def require_page_admin(request: Request) -> PageUser:
    """The admin forms: checked before the form is read, so others get 403 whatever they send."""
    await page_admin(request)
    return page_user(request)


require_page_admin.roles = page_admin.roles  # read by the role-matrix test


@router.post("/alerts/silence")
async def silence_from_page(request: Request, point: str = Form(...), rule: str = Form(""),
                            reason: str = Form(...), duration: str = Form("2h"),
                            user: PageUser = Depends(require_page_admin)):
    from collector.alerts.config import AlertConfigError
    from collector.alerts.config import duration as parse_duration
    from collector.store.alerts import create_silence
    store, engine = get_store(request), request.app.state.alerts
    summary = await run_in_threadpool(queries.point_summary, store, point, None, request.app.state.silence_intervals)
    if summary is None or not is_within(summary.region_path, user.region_path):
        raise HTTPException(404, detail="没有这个服务点")
    reason = reason.strip()
    try:
        seconds = parse_duration(duration, "duration")
    except AlertConfigError:
        seconds = 0
    if len(reason) < 2 or not 0 < seconds <= 90 * 86400:
        return RedirectResponse("/alerts?" + urlencode({"error": "请填写屏蔽原因并选择时长"}), status_code=303)
    now = engine.clock()
    await run_in_threadpool(lambda: create_silence(
        store, actor=user.actor, source=request.client.host if request.client else None,
        region_path=summary.region_path, point_code=point, rule=rule or None, target=None, reason=reason[:1000],
        starts_at=now, ends_at=now + timedelta(seconds=seconds), now=now))
    return RedirectResponse("/alerts?" + urlencode({"notice": f"已屏蔽 {summary.name} 的告警"}), status_code=303)


@router.post("/alerts/silence/{silence_id}/expire")
async def expire_from_page(request: Request, silence_id: int = PathParam(ge=1, le=MAX_ID),
                           user: PageUser = Depends(require_page_admin)):
    from collector.store.alerts import expire_silence

    store, engine = get_store(request), request.app.state.alerts
    row = await run_in_threadpool(lambda: expire_silence(
        store, silence_id, actor=user.actor, source=request.client.host if request.client else None,
        scope=user.region_path, now=engine.clock()))
    if row is None:
        raise HTTPException(404, detail="没有这个屏蔽")
    return RedirectResponse("/alerts?" + urlencode({"notice": "屏蔽已解除"}), status_code=303)


AUDIT_ACTIONS = {
    "login": "登录", "login.failed": "登录失败", "logout": "退出", "user.create": "创建用户", "user.password": "重设密码",
    "token.create": "创建令牌", "enroll_code.create": "创建注册码", "point.upsert": "登记服务点",
    "points.import": "导入服务点", "points.export": "导出服务点", "silence.create": "设置屏蔽", "silence.expire": "解除屏蔽",
    "evidence.export": "导出证据", "user.disable": "停用用户", "user.enable": "启用用户",
    "user.end_sessions": "结束会话", "token.revoke": "吊销令牌", "agent.enroll": "终端注册",
    "agent.enroll_failed": "终端注册失败",
}
AUDIT_PAGE = 200


@router.get("/audit", response_class=HTMLResponse)
async def audit_page(request: Request, action: str = "",
                     before: int | None = Query(None, ge=1, le=MAX_BIGINT),
                     user: PageUser = Depends(require_page_admin)):
    store = get_store(request)
    entries = await run_in_threadpool(audit.audit_entries, store, user.region_path, AUDIT_PAGE, before, action or None)
    chain = await run_in_threadpool(audit.verify_audit, store)
    return render(request, "audit.html", {"entries": entries, "chain": chain, "action": action,
                                          "action_labels": AUDIT_ACTIONS, "limit": AUDIT_PAGE}, nav="audit")


@router.get("/ui/points/{code}/series")
async def point_series(code: str, request: Request, range: str = "24h", check: str = NET_CORE_ICMP):
    span = next((d for k, _, d in RANGES if k == range), None)
    if span is None:
        raise HTTPException(422, detail=f"range must be one of {', '.join(k for k, _, _ in RANGES)}")
    store = get_store(request)
    if await run_in_threadpool(queries.point_summary, store, code, None, request.app.state.silence_intervals) is None:
        raise HTTPException(404, detail="没有这个服务点")
    until = datetime.now(timezone.utc)
    return await run_in_threadpool(series.check_series, store, code, check, until - span, until)


def _worst(statuses: list[str]) -> str:
    """A pillar's state: the worst of its checks' statuses (vocabulary.worst), "none" before any result."""
    return worst(statuses) if statuses else "none"
