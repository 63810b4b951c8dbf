"""The alert tables' SQL: lists for the API, firing counts for /metrics, silences (audited), the engine's
reads and writes of episodes, and the notification outbox. What the states mean and when they change is
collector/alerts/engine.py's business; this module only reads and writes rows."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, bindparam, exists, func, inspect, or_, select
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import aliased

from collector.registry.regions import is_within, normalize_path
from collector.store import models as m
from collector.store.audit import Actor, append
from collector.store.models import Alert, Notification, Silence
from collector.store.points import point_region
from collector.store.regionscope import scoped
from collector.store.replay import samples_since_watermarks

OPEN_STATES = ("pending", "firing")


def _scoped(stmt, column, scope: str):
    return scoped(stmt, column, scope)


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


# -- the engine's reads and writes (collector/alerts/engine.py decides; these only fetch and store) ----------
# A point as the rules see it, and its latest results: plain tuples, in these columns' order.
VIEW_COLUMNS = (m.Point.code, m.Point.name, m.Point.region_path, m.Point.report_interval_s,
                m.PointState.last_received_at, m.PointState.clock_skew_s, m.PointState.fingerprint_mismatch)
LATEST_COLUMNS = (m.LatestResult.check, m.LatestResult.target, m.LatestResult.status, m.LatestResult.value,
                  m.LatestResult.message, m.LatestResult.details, m.LatestResult.received_at)


def screen(store, codes: list[str]) -> tuple[list[str], list[tuple], dict[str, list[tuple]]]:
    """For these points, read without locks: (codes with an open alert, VIEW_COLUMNS rows and
    {code: [LATEST_COLUMNS rows]} of the others: a point with an open alert is evaluated whatever its
    state says, and its evaluation reads that again under its lock)."""
    with store.engine.connect() as conn:
        opened = sorted(set(conn.scalars(select(Alert.point_code).where(
            Alert.point_code.in_(codes), Alert.open_key.is_not(None)))))
        rest = sorted(set(codes) - set(opened))
        views = list(conn.execute(select(*VIEW_COLUMNS).join(m.PointState, m.PointState.point_code == m.Point.code)
                                  .where(m.Point.code.in_(rest)))) if rest else []
        latest: dict[str, list[tuple]] = {}
        if rest:
            for code, *row in conn.execute(select(m.LatestResult.point_code, *LATEST_COLUMNS)
                                           .where(m.LatestResult.point_code.in_(rest))):
                latest.setdefault(code, []).append(tuple(row))
    return opened, [tuple(v) for v in views], latest


def lock_points(s, codes: list[str]) -> tuple[dict[str, tuple], dict[str, m.PointState]]:
    """Inside an evaluation's transaction: lock these points' point_state rows (the lock ingest takes), in
    code order as ingest does; returns ({code: VIEW_COLUMNS row}, {code: its point_state}) of the points
    that are there. Keep the point_state objects while the transaction lasts: the session holds them
    weakly, and their watermarks are read and moved through them (no further statement)."""
    states = {st.point_code: st for st in s.scalars(
        select(m.PointState).where(m.PointState.point_code.in_(codes))
        .order_by(m.PointState.point_code).with_for_update())}
    if not states:
        return {}, {}
    views = {row[0]: tuple(row) for row in s.execute(
        select(*VIEW_COLUMNS).join(m.PointState, m.PointState.point_code == m.Point.code)
        .where(m.Point.code.in_(sorted(states))))}
    return views, states


def latest_rows_of(s, codes: list[str]) -> dict[str, list[tuple]]:
    """{code: [LATEST_COLUMNS rows]} of these points, in one statement (on the session's connection: through
    the session, plain columns still went the ORM's way, a quarter more per row, on every pass)."""
    out: dict[str, list[tuple]] = {code: [] for code in codes}
    for code, *rest in s.connection().execute(select(m.LatestResult.point_code, *LATEST_COLUMNS)
                                 .where(m.LatestResult.point_code.in_(codes))):
        out[code].append(tuple(rest))
    return out


# A point's samples since its alert watermark, in the order its reports were stored (the hash chain's
# order, which the agent's clock cannot reorder): REPLAY_COLUMNS rows, report id first (collector/store/
# replay.py: a row per key each report carried, written or not).
def results_since_watermarks(s, codes: list[str], limit: int) -> dict[str, list[tuple]]:
    """Inside an evaluation (after lock_points): {code: up to ``limit`` REPLAY_COLUMNS samples of the
    point's reports stored after its watermark, oldest first}."""
    return samples_since_watermarks(s.connection(), codes, limit)


def set_evaluated_up_to(state: m.PointState, report_pk: int) -> None:
    """Move a locked point's watermark (a point_state from lock_points) to the last report judged."""
    state.alerts_evaluated_report = report_pk


def unjudged(store, codes: list[str], most_reports: int, due: set[str] = frozenset()) -> tuple[dict, dict]:
    """For screening, read without locks: ({code: (watermark, reports since it, newest report id)} of the
    points with reports since their watermark, {code: [REPLAY_COLUMNS rows]} of those with at most
    ``most_reports`` of them, except the points already ``due`` (their evaluation reads the rows anyway))."""
    wm = func.coalesce(m.PointState.alerts_evaluated_report, 0)
    since = (m.Report.point_code.in_(codes), m.Report.id > wm)
    with store.engine.connect() as conn:
        lag = {code: (mark, n, newest) for code, mark, n, newest in conn.execute(
            select(m.Report.point_code, m.PointState.alerts_evaluated_report, func.count(), func.max(m.Report.id))
            .join(m.PointState, m.PointState.point_code == m.Report.point_code).where(*since)
            .group_by(m.Report.point_code, m.PointState.alerts_evaluated_report))}
        few = [code for code, (_, n, _) in lag.items() if n <= most_reports and code not in due]
        rows = {code: samples for code, samples in samples_since_watermarks(conn, few).items() if samples}
    return lag, rows


def advance_evaluated_up_to(store, moves: list[tuple[str, int | None, int]]) -> None:
    """[(code, watermark as read, new watermark)]: each moves only if no evaluation moved it meanwhile."""
    if not moves:
        return
    table = m.PointState.__table__
    stmt = (table.update().where(table.c.point_code == bindparam("code"),
                                 func.coalesce(table.c.alerts_evaluated_report, 0) == bindparam("old"))
            .values(alerts_evaluated_report=bindparam("new")))
    with store.write_connection() as conn:  # in code order, like ingest's row locks: no deadlock
        conn.execute(stmt, [{"code": code, "old": old or 0, "new": new} for code, old, new in sorted(moves)])


def open_alerts_of(s, codes: list[str]) -> dict[str, list[Alert]]:
    """{code: its open alerts} of these points, in one statement."""
    out: dict[str, list[Alert]] = {code: [] for code in codes}
    for a in s.scalars(select(Alert).where(Alert.point_code.in_(codes), Alert.open_key.is_not(None))
                       .order_by(Alert.id)):
        out[a.point_code].append(a)
    return out


def add_alert(s, **fields) -> Alert:
    alert = Alert(**fields)
    s.add(alert)
    return alert


def delete_alert(s, alert: Alert) -> None:
    if inspect(alert).pending:  # added in this transaction and never written: just forget it
        s.expunge(alert)
    else:
        s.delete(alert)


def flush(s) -> None:
    """Write the pending changes of the transaction (a new alert's id is needed in its messages)."""
    s.flush()


def active_silences(s, now: datetime) -> list[Silence]:
    return list(s.scalars(select(Silence).where(Silence.ends_at > now, Silence.starts_at <= now)))


def silences_now(store, now: datetime) -> list[Silence]:
    with store.session() as s:
        return active_silences(s, now)


def queue_notification(s, alert_id: int, notifier: str, event: str, payload: dict, now: datetime) -> None:
    s.add(Notification(alert_id=alert_id, notifier=notifier, event=event, payload=payload, status="queued",
                       attempts=0, next_attempt_at=now, created_at=now))


def due_candidates(store, unjudged_before: datetime) -> tuple[set[str], list[tuple], list[tuple], set[str]]:
    """What the timer looks at: (points with an open silence alert, (code, region, interval, last received)
    of every point that has reported, (code, rule, fail streak, pending since, unjudged) of every pending
    alert, points with a firing alert not yet sent). ``unjudged``: the point has a report received before
    ``unjudged_before`` beyond its alert watermark (an evaluation ingest asked for and never got: a crash
    between the commit and the evaluation, a collector gone)."""
    wm = func.coalesce(m.PointState.alerts_evaluated_report, 0)
    behind = exists().where(m.Report.point_code == Alert.point_code, m.Report.id > wm,
                            m.Report.received_at < unjudged_before)
    with store.session() as s:
        silent_open = set(s.scalars(select(Alert.point_code).where(
            Alert.rule == "point_silent", Alert.open_key.is_not(None))))
        rows = [tuple(r) for r in s.execute(
            select(m.Point.code, m.Point.region_path, m.Point.report_interval_s, m.PointState.last_received_at)
            .join(m.PointState, m.PointState.point_code == m.Point.code)
            .where(m.PointState.last_received_at.is_not(None)))]
        pending = [tuple(r) for r in s.execute(
            select(Alert.point_code, Alert.rule, Alert.fail_streak, Alert.pending_since, behind)
            .outerjoin(m.PointState, m.PointState.point_code == Alert.point_code)
            .where(Alert.state == "pending"))]
        unsent = set(s.scalars(select(Alert.point_code).where(Alert.state == "firing",
                                                               Alert.notified_at.is_(None))))
    return silent_open, rows, pending, unsent


# -- the notification outbox ------------------------------------------------------------------------------
def claim_notifications(store, now: datetime, lease: timedelta, limit: int) -> list[tuple]:
    """Mark up to ``limit`` due rows ``sending`` with a lease, in a short transaction of their own (FOR UPDATE
    SKIP LOCKED on PostgreSQL, so collectors take different rows): [(id, notifier, payload, attempt,
    queued at)].

    A row waits while an earlier one of the same alert to the same notifier is still queued or sending: a
    "resolved" sent while its "firing" waits for a retry (or beside it, on another sender thread) would reach
    the robot first, and the firing that follows would leave the alert open there for good."""
    earlier = aliased(Notification)
    with store.session() as s:
        stmt = (select(Notification)
                .where(or_(and_(Notification.status == "queued", Notification.next_attempt_at <= now),
                           and_(Notification.status == "sending", Notification.lease_until < now)))
                .where(~exists().where(earlier.alert_id == Notification.alert_id,
                                       earlier.notifier == Notification.notifier, earlier.id < Notification.id,
                                       earlier.status.in_(("queued", "sending"))))
                .order_by(Notification.id).limit(limit))
        if not store.is_sqlite:
            stmt = stmt.with_for_update(skip_locked=True)
        rows = list(s.scalars(stmt))
        for row in rows:
            row.status, row.lease_until, row.attempts = "sending", now + lease, row.attempts + 1
        return [(r.id, r.notifier, r.payload, r.attempts, r.created_at) for r in rows]


def finish_notification(store, nid: int, outcome: str, now: datetime, error: str | None = None,
                        next_attempt_at: datetime | None = None) -> None:
    """Record a send: ``sent``, ``retry`` (queued again for ``next_attempt_at``) or ``failed``."""
    with store.session() as s:
        row = s.get(Notification, nid)
        if row is None:
            return
        row.lease_until = None
        if outcome == "sent":
            row.status, row.sent_at, row.last_error = "sent", now, None
        elif outcome == "retry":
            row.status, row.last_error, row.next_attempt_at = "queued", error[:2000], next_attempt_at
        else:
            row.status, row.last_error = "failed", error[:2000]


def outbox_counts(store) -> list[tuple[str, int]]:
    """(notifier name, messages queued or being sent) of every notifier with any."""
    with store.session() as s:
        return [tuple(r) for r in s.execute(select(Notification.notifier, func.count()).where(
            Notification.status.in_(("queued", "sending"))).group_by(Notification.notifier))]
