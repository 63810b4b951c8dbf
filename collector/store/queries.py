"""Reads: the latest state for lists, pages and /metrics; history only for a point and a period."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy import or_, select

from agent.wire import STATUS_CODE
from collector.regions import sql_prefix
from collector.store import models as m

# A point is "up" while its last report is younger than this many report intervals.
SILENCE_INTERVALS = 3


@dataclass
class PointSummary:
    code: str
    name: str
    region_path: str
    profile: str
    simulated: bool
    report_interval_s: int
    last_received_at: datetime | None
    agent_version: str | None
    hostname: str | None
    clock_skew_s: float | None
    fingerprint_mismatch: bool
    counts: dict[str, int] = field(default_factory=lambda: {"ok": 0, "warn": 0, "fail": 0, "error": 0})
    up: bool = False

    @property
    def worst(self) -> str:
        """The point's state for colouring and sorting: silent beats everything, then error, fail, warn."""
        if not self.up:
            return "silent"
        for status in ("error", "fail", "warn"):
            if self.counts[status]:
                return status
        return "ok"


STATE_ORDER = {"silent": 0, "error": 1, "fail": 2, "warn": 3, "ok": 4}


def _aware(ts):
    return None if ts is None else (ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc))


def _scope_filter(stmt, scope: str):
    prefix = sql_prefix(scope)
    if prefix is None:
        return stmt
    exact, like = prefix
    return stmt.where(or_(m.Point.region_path == exact, m.Point.region_path.like(like, escape="\\")))


def list_points(self, scope: str = "/", now: datetime | None = None) -> list[PointSummary]:
    from collector.store import utcnow

    now = now or utcnow()
    with self.session() as s:
        stmt = _scope_filter(select(m.Point, m.PointState).outerjoin(
            m.PointState, m.PointState.point_code == m.Point.code), scope).order_by(m.Point.code)
        summaries: dict[str, PointSummary] = {}
        for point, state in s.execute(stmt):
            last = _aware(state.last_received_at) if state else None
            summaries[point.code] = PointSummary(
                code=point.code, name=point.name, region_path=point.region_path, profile=point.profile,
                simulated=point.simulated, report_interval_s=point.report_interval_s, last_received_at=last,
                agent_version=state.agent_version if state else None, hostname=state.hostname if state else None,
                clock_skew_s=state.clock_skew_s if state else None,
                fingerprint_mismatch=bool(state and state.fingerprint_mismatch),
                up=last is not None and (now - last).total_seconds() <= SILENCE_INTERVALS * point.report_interval_s,
            )
        if summaries:
            rows = s.execute(_scope_filter(
                select(m.LatestResult.point_code, m.LatestResult.status).join(
                    m.Point, m.Point.code == m.LatestResult.point_code), scope))
            for code, status in rows:
                if code in summaries:
                    summaries[code].counts[status] += 1
    return list(summaries.values())


def point_summary(self, code: str, now: datetime | None = None) -> PointSummary | None:
    from collector.store import utcnow

    now = now or utcnow()
    with self.session() as s:
        point = s.scalar(select(m.Point).where(m.Point.code == code))
        if point is None:
            return None
        region = point.region_path
    for p in list_points(self, region, now):
        if p.code == code:
            return p
    return None


def latest_for_point(self, code: str) -> list[m.LatestResult]:
    with self.session() as s:
        rows = list(s.scalars(select(m.LatestResult).where(m.LatestResult.point_code == code)))
    return sorted(rows, key=lambda r: (-STATUS_CODE.get(r.status, 0), r.check, r.target))


def point_results(self, code: str, since: datetime, until: datetime, check: str | None = None,
                  limit: int = 10000) -> list[m.Result]:
    with self.session() as s:
        stmt = select(m.Result).where(m.Result.point_code == code, m.Result.received_at >= since,
                                      m.Result.received_at < until)
        if check:
            stmt = stmt.where(m.Result.check == check)
        return list(s.scalars(stmt.order_by(m.Result.received_at, m.Result.id).limit(limit)))


def reports_for_point(self, code: str, since: datetime, until: datetime, limit: int = 10000) -> list[dict]:
    with self.session() as s:
        rows = s.execute(select(m.Report.report_id, m.Report.seq, m.Report.collected_at, m.Report.received_at)
                         .where(m.Report.point_code == code, m.Report.received_at >= since,
                                m.Report.received_at < until)
                         .order_by(m.Report.id).limit(limit))
        return [{"report_id": r.report_id, "seq": r.seq, "collected_at": _aware(r.collected_at),
                 "received_at": _aware(r.received_at)} for r in rows]


def metrics_snapshot(self, scope: str = "/", now: datetime | None = None):
    """(points, results) beneath a scope for /metrics, from the latest-state tables only, as plain tuples.

    points: (code, region_path, profile, up, last_received_ts, clock_skew_s, fingerprint_mismatch, reported)
    results: (code, check, target, status, value, loss_ratio, supplies) where the database itself picks
    out the few details that become series — ``loss_ratio`` of core ICMP results, the ``supplies`` list the
    device checks lift to the top of a device result's details — because decoding every row's JSON would
    cost more than the rest of the scrape at 25,000 points. Core (not ORM) reads: no object per row.
    """
    from sqlalchemy import String, case, type_coerce

    from collector.store import utcnow

    now_ts = (now or utcnow()).timestamp()
    lr = m.LatestResult
    device = lr.check.like("device.%")
    top_supplies = lr.details["supplies"]
    with self.engine.connect() as conn:
        points = []
        for code, region, profile, interval, last, skew, mismatch, agent_id in conn.execute(_scope_filter(
                select(m.Point.code, m.Point.region_path, m.Point.profile, m.Point.report_interval_s,
                       m.PointState.last_received_at, m.PointState.clock_skew_s,
                       m.PointState.fingerprint_mismatch, m.PointState.agent_id)
                .outerjoin(m.PointState, m.PointState.point_code == m.Point.code), scope)):
            last_ts = _aware(last).timestamp() if last is not None else None
            up = last_ts is not None and now_ts - last_ts <= SILENCE_INTERVALS * interval
            points.append((code, region, profile, up, last_ts, skew, bool(mismatch), agent_id is not None))
        # JSON comes back as text (decoded below only where present), so no JSON processor runs per row.
        stmt = select(
            lr.point_code, lr.check, lr.target, lr.status, lr.value,
            case((lr.check == "net.core.icmp", lr.details["loss_ratio"].as_float()), else_=None),
            type_coerce(case((device, top_supplies), else_=None), String))
        if scope != "/":
            stmt = _scope_filter(stmt.join(m.Point, m.Point.code == lr.point_code), scope)
        rows = [r if r[6] is None else (*r[:6], _json(r[6])) for r in conn.execute(stmt).all()]
    return points, rows


def _json(raw):
    """A JSON column read as text (SQLite) or already decoded (psycopg); 'null' and NULL are None."""
    if raw is None or raw == "null":
        return None
    return json.loads(raw) if isinstance(raw, str) else raw
