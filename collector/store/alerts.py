"""The alert tables' SQL: lists for the API, firing counts for /metrics, silences (audited), the engine's
reads and writes of episodes, and the notification outbox. What the states mean and when they change is
collector/alerts/engine.py's business; this module only reads and writes rows."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import func, or_, select
from sqlalchemy.exc import OperationalError, ProgrammingError

from collector.registry.regions import is_within, normalize_path, sql_prefix
from collector.store import models as m
from collector.store.audit import Actor, append
from collector.store.models import Alert, Notification, Silence
from collector.store.points import point_region

OPEN_STATES = ("pending", "firing")


def _scoped(stmt, column, scope: str):
    prefix = sql_prefix(scope)
    if prefix is None:
        return stmt
    exact, like = prefix
    return stmt.where(or_(column == exact, column.like(like, escape="\\")))


def alerts_firing_counts(store, scope: str = "/") -> dict[str, dict[str, int]]:
    """Firing alerts beneath ``scope``: {region path: {severity: count}} (for pointwatch_alerts_firing)."""
    out: dict[str, dict[str, int]] = {}
    with store.session() as s:
        stmt = _scoped(select(Alert.region_path, Alert.severity, func.count()).where(Alert.state == "firing"),
                       Alert.region_path, scope).group_by(Alert.region_path, Alert.severity)
        for region, severity, n in s.execute(stmt):
            out.setdefault(region, {})[severity] = n
    return out


def metrics_alerts(store, scope: str = "/") -> list[tuple[str, str, int]]:
    """[(point code, watched check, firing count)] beneath ``scope``, as collector/metrics/render.py reads them for
    ``pointwatch_alerts_firing``; silence of a point is reported under the check ``point.silent``. None
    in a store the alert tables were never created in."""
    try:
        with store.session() as s:
            stmt = _scoped(select(Alert.point_code, Alert.rule, Alert.check, func.count())
                           .where(Alert.state == "firing"), Alert.region_path, scope)
            rows = s.execute(stmt.group_by(Alert.point_code, Alert.rule, Alert.check)).all()
    except (OperationalError, ProgrammingError):
        return []
    out: dict[tuple[str, str], int] = {}
    for code, rule, check, n in rows:
        key = (code, "point.silent" if rule == "point_silent" else check)
        out[key] = out.get(key, 0) + n
    return [(code, check, n) for (code, check), n in sorted(out.items())]


def list_alerts(store, scope: str = "/", state: str = "open", point: str | None = None,
                limit: int = 500) -> list[tuple[Alert, str]]:
    """[(alert, point name)], newest first. ``state``: open (pending+firing), pending, firing, resolved, all."""
    with store.session() as s:
        stmt = select(Alert, m.Point.name).join(m.Point, m.Point.code == Alert.point_code, isouter=True)
        stmt = _scoped(stmt, Alert.region_path, scope)
        if state == "open":
            stmt = stmt.where(Alert.state.in_(OPEN_STATES))
        elif state != "all":
            stmt = stmt.where(Alert.state == state)
        if point:
            stmt = stmt.where(Alert.point_code == point)
        return [(a, name or a.point_code) for a, name in
                s.execute(stmt.order_by(Alert.pending_since.desc(), Alert.id.desc()).limit(limit))]


def open_alerts_for_points(store, codes: set[str]) -> dict[str, list[Alert]]:
    out: dict[str, list[Alert]] = {}
    if not codes:
        return out
    with store.session() as s:
        for a in s.scalars(select(Alert).where(Alert.point_code.in_(codes), Alert.state.in_(OPEN_STATES))):
            out.setdefault(a.point_code, []).append(a)
    return out


def notifications_for(store, alert_ids: list[int]) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    if not alert_ids:
        return out
    with store.session() as s:
        for n in s.scalars(select(Notification).where(Notification.alert_id.in_(alert_ids))
                           .order_by(Notification.id)):
            out.setdefault(n.alert_id, []).append({
                "notifier": n.notifier, "event": n.event, "status": n.status, "attempts": n.attempts,
                "sent_at": n.sent_at, "last_error": n.last_error})
    return out


# -- silences ---------------------------------------------------------------------------------------------
def list_silences(store, scope: str, now: datetime, include_expired: bool = False) -> list[Silence]:
    """Silences that touch ``scope``: set beneath it, or above it (a province-wide one mutes a county too)."""
    with store.session() as s:
        stmt = select(Silence).order_by(Silence.id.desc())
        if not include_expired:
            stmt = stmt.where(Silence.ends_at > now)
        rows = list(s.scalars(stmt.limit(2000)))
    return [r for r in rows if is_within(r.region_path, scope) or is_within(scope, r.region_path)]


def create_silence(store, *, actor: str, source: str | None, region_path: str, point_code: str | None,
                   rule: str | None, target: str | None, reason: str, starts_at: datetime,
                   ends_at: datetime, now: datetime) -> Silence:
    with store.session() as s:
        row = Silence(region_path=normalize_path(region_path), point_code=point_code, rule=rule, target=target,
                      reason=reason, created_by=actor, created_at=now, starts_at=starts_at, ends_at=ends_at)
        s.add(row)
        s.flush()
        _audit(s, actor, source, "silence.create", f"silence:{row.id}", {
            "region": row.region_path, "point": point_code, "rule": rule, "target": target, "reason": reason,
            "starts_at": starts_at.isoformat(), "ends_at": ends_at.isoformat()}, row.region_path)
    return row


def expire_silence(store, silence_id: int, *, actor: str, source: str | None, scope: str,
                   now: datetime) -> Silence | None:
    with store.session() as s:
        row = s.get(Silence, silence_id, with_for_update=True)
        if row is None or not is_within(row.region_path, scope):
            return None
        if row.ends_at.replace(tzinfo=row.ends_at.tzinfo or timezone.utc) > now:
            row.ends_at, row.expired_by = now, actor
            _audit(s, actor, source, "silence.expire", f"silence:{row.id}", {"reason": row.reason},
                  row.region_path)
    return row


def _audit(session, actor: str, source: str | None, action: str, target: str, details: dict,
           region_path: str) -> None:
    """Append to the store's hash-chained audit log inside the caller's transaction."""
    append(session, Actor(actor, source), action, target, details, region_path)


# -- evidence: what happened to a point during a period ---------------------------------------------------
def alerts_in_period(store, code: str, start: datetime, end: datetime):
    """The point's alerts whose span (first seen → resolved, or still open) touches [start, end)."""
    from agent.wire import rfc3339

    with store.session() as s:
        rows = list(s.scalars(select(Alert).where(
            Alert.point_code == code, Alert.pending_since < end,
            (Alert.resolved_at.is_(None)) | (Alert.resolved_at >= start)).order_by(Alert.pending_since, Alert.id)))
    for a in rows:
        yield {"id": a.id, "rule": a.rule, "check": a.check, "target": a.target, "severity": a.severity,
               "state": a.state, "summary": a.summary, "value": a.value,
               "since": rfc3339(_aware(a.pending_since)), "fired_at": _iso(a.fired_at),
               "resolved_at": _iso(a.resolved_at)}


def silences_in_period(store, code: str, start: datetime, end: datetime):
    """Silences that could have muted the point during [start, end): on it, or on a region above it."""
    region = point_region(store, code)
    with store.session() as s:
        rows = list(s.scalars(select(Silence).where(Silence.starts_at < end, Silence.ends_at >= start)
                              .order_by(Silence.starts_at, Silence.id)))
    for r in rows:
        if r.point_code not in (None, code) or (region and not is_within(region, r.region_path)):
            continue
        yield {"id": r.id, "region": r.region_path, "point": r.point_code, "rule": r.rule, "target": r.target,
               "reason": r.reason, "created_by": r.created_by, "created_at": _iso(r.created_at),
               "starts_at": _iso(r.starts_at), "ends_at": _iso(r.ends_at), "expired_by": r.expired_by}


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def _iso(ts: datetime | None) -> str | None:
    from agent.wire import rfc3339

    return None if ts is None else rfc3339(_aware(ts))
