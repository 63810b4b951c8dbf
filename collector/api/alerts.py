"""GET /api/v1/alerts, silences (POST/GET/DELETE /api/v1/silences): region-scoped, silences admin-only
and written to the audit log. The alert engine they read is ``app.state.alerts`` (wired in create_app)."""

from __future__ import annotations

from datetime import timedelta, timezone

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from collector.alerts.config import DEFAULT_RULES, AlertConfigError, duration
from collector.alerts.messages import SEVERITY_CN
from collector.alerts.rules import TITLES
from collector.api.deps import (
    MAX_ID,
    MOMENT_DOC,
    actor_name,
    get_store,
    moment,
    requested_scope,
    require_admin,
    require_reader,
)
from collector.registry.regions import RegionError, is_within, normalize_path
from collector.store import TokenInfo, queries
from collector.store.alerts import (
    create_silence,
    expire_silence,
    list_alerts,
    list_silences,
    notifications_for,
    silences_now,
)

router = APIRouter(prefix="/api/v1", tags=["alerts"])
STATES = ("open", "pending", "firing", "resolved", "all")


def _iso(ts):
    from agent.wire import rfc3339

    return None if ts is None else rfc3339(ts)


def alert_json(alert, point_name: str, mute: str | None, notes: list[dict]) -> dict:
    return {
        "id": alert.id, "fingerprint": alert.fingerprint, "rule": alert.rule, "title": TITLES.get(alert.rule),
        "state": alert.state, "severity": alert.severity, "severity_cn": SEVERITY_CN.get(alert.severity),
        "point": alert.point_code, "point_name": point_name, "region": alert.region_path,
        "check": alert.check, "target": alert.target, "summary": alert.summary, "value": alert.value,
        "since": _iso(alert.pending_since), "fired_at": _iso(alert.fired_at), "resolved_at": _iso(alert.resolved_at),
        "notified_at": _iso(alert.notified_at), "muted": mute,
        "notifications": [{**n, "sent_at": _iso(n["sent_at"])} for n in notes],
    }


@router.get("/alerts")
async def get_alerts(request: Request, region: str = "/", state: str = "open", point: str | None = None,
                     limit: int = Query(500, ge=1, le=5000), auth: TokenInfo = Depends(require_reader)):
    if state not in STATES:
        raise HTTPException(422, detail=f"state: one of {', '.join(STATES)}")
    scope = requested_scope(region, auth)
    if scope is None:
        return {"alerts": []}
    return {"alerts": await run_in_threadpool(alert_views, request.app.state.alerts, get_store(request), scope,
                                              state, point, limit)}


def alert_views(engine, store, scope: str, state: str, point: str | None, limit: int) -> list[dict]:
    """Alerts beneath a scope as the API and the web page show them: why muted, what was sent."""
    rows = list_alerts(store, scope, state, point, limit)
    notes = notifications_for(store, [a.id for a, _ in rows])
    now = engine.clock()
    silences = silences_now(store, now)
    by_point: dict[str, list] = {}
    for a, _ in rows:
        by_point.setdefault(a.point_code, []).append(a)
    out = []
    for a, name in rows:
        mute = engine.mute_reason(a, by_point[a.point_code], silences, now) if a.state == "firing" else None
        out.append(alert_json(a, name, mute, notes.get(a.id, [])))
    return out


class SilenceIn(BaseModel):
    reason: str = Field(min_length=2, max_length=1000, description="why (shown to everyone, audited)")
    point: str | None = Field(None, max_length=40, description="one point's code")
    region: str | None = Field(None, max_length=400, description="a region path; default: the caller's region")
    rule: str | None = Field(None, description="one rule id; default: every rule")
    target: str | None = Field(None, max_length=200)
    starts_at: str | None = Field(None, max_length=40, description=MOMENT_DOC + "; default: now")
    ends_at: str | None = Field(None, max_length=40, description=MOMENT_DOC)
    duration: str | None = Field(None, description="instead of ends_at: 30m, 2h, 3d")


def silence_json(row) -> dict:
    return {"id": row.id, "region": row.region_path, "point": row.point_code, "rule": row.rule,
            "target": row.target, "reason": row.reason, "created_by": row.created_by,
            "created_at": _iso(row.created_at), "starts_at": _iso(row.starts_at), "ends_at": _iso(row.ends_at),
            "expired_by": row.expired_by}


@router.post("/silences", status_code=201)
async def post_silence(body: SilenceIn, request: Request, auth: TokenInfo = Depends(require_admin)):
    store, engine = get_store(request), request.app.state.alerts
    now = engine.clock()
    if body.rule and body.rule not in DEFAULT_RULES:
        raise HTTPException(422, detail=f"rule: one of {', '.join(DEFAULT_RULES)}")
    starts = moment(body.starts_at, "starts_at") or now
    try:
        ends = moment(body.ends_at, "ends_at", end=True) or (
            starts + timedelta(seconds=duration(body.duration, "duration")) if body.duration else None)
    except AlertConfigError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    if ends is None:
        raise HTTPException(422, detail="a silence needs ends_at or duration: it must expire")
    if ends <= max(starts, now) or ends - starts > timedelta(days=90):
        raise HTTPException(422, detail="ends_at must be in the future and at most 90 days after starts_at")
    region = body.region or auth.region_path
    if body.point:
        summary = await run_in_threadpool(queries.point_summary, store, body.point, None, request.app.state.silence_intervals)
        if summary is None or not is_within(summary.region_path, auth.region_path):
            raise HTTPException(404, detail="no such point")
        region = summary.region_path
    try:
        region = normalize_path(region)
    except RegionError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    if not is_within(region, auth.region_path):
        raise HTTPException(403, detail="a silence must lie within your own region")
    source = request.client.host if request.client else None
    row = await run_in_threadpool(lambda: create_silence(
        store, actor=actor_name(auth), source=source, region_path=region, point_code=body.point,
        rule=body.rule, target=body.target, reason=body.reason, starts_at=starts.astimezone(timezone.utc),
        ends_at=ends.astimezone(timezone.utc), now=now))
    return silence_json(row)


@router.get("/silences")
async def get_silences(request: Request, expired: bool = False, auth: TokenInfo = Depends(require_reader)):
    engine = request.app.state.alerts
    rows = await run_in_threadpool(list_silences, get_store(request), auth.region_path, engine.clock(), expired)
    return {"silences": [silence_json(r) for r in rows]}


@router.delete("/silences/{silence_id}")
async def delete_silence(request: Request, silence_id: int = Path(ge=1, le=MAX_ID),
                         auth: TokenInfo = Depends(require_admin)):
    engine = request.app.state.alerts
    source = request.client.host if request.client else None
    row = await run_in_threadpool(lambda: expire_silence(
        get_store(request), silence_id, actor=actor_name(auth), source=source, scope=auth.region_path,
        now=engine.clock()))
    if row is None:
        raise HTTPException(404, detail="no such silence")
    return silence_json(row)
