"""Reads: the latest state for lists, pages and /metrics; history only for a point and a period."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy import select

from agent.vocabulary import SILENCE_INTERVALS_DEFAULT, SILENT, worst, zero_counts
from agent.wire import STATUS_CODE
from collector.store import models as m
from collector.store.regionscope import scoped


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
    counts: dict[str, int] = field(default_factory=zero_counts)
    up: bool = False
    created_at: datetime | None = None  # when the point was registered: nothing before it is scored

    @property
    def worst(store) -> str:
        """The point's state for colouring and sorting (one of vocabulary.POINT_STATES): silent beats
        everything, else the worst status among its latest results."""
        if not store.up:
            return SILENT
        return worst(status for status, n in store.counts.items() if n)


def _aware(ts):
    return None if ts is None else (ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc))


def _scope_filter(stmt, scope: str):
    return scoped(stmt, m.Point.region_path, scope)


def list_points(store, scope: str = "/", now: datetime | None = None,
                silence_intervals: int = SILENCE_INTERVALS_DEFAULT) -> list[PointSummary]:
    """The points beneath a scope with their latest state; a point is up while its last report is younger
    than ``silence_intervals`` report intervals."""
    from collector.store import utcnow

    now = now or utcnow()
    with store.session() as s:
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
                up=last is not None and (now - last).total_seconds() <= silence_intervals * point.report_interval_s,
                created_at=_aware(point.created_at),
            )
        if summaries:
            rows = s.execute(_scope_filter(
                select(m.LatestResult.point_code, m.LatestResult.status).join(
                    m.Point, m.Point.code == m.LatestResult.point_code), scope))
            for code, status in rows:
                if code in summaries:
                    summaries[code].counts[status] += 1
    return list(summaries.values())


def point_summary(store, code: str, now: datetime | None = None,
                  silence_intervals: int = SILENCE_INTERVALS_DEFAULT) -> PointSummary | None:
    from collector.store import utcnow

    now = now or utcnow()
    with store.session() as s:
        point = s.scalar(select(m.Point).where(m.Point.code == code))
        if point is None:
            return None
        region = point.region_path
    for p in list_points(store, region, now, silence_intervals):
        if p.code == code:
            return p
    return None


def latest_for_point(store, code: str) -> list[m.LatestResult]:
    with store.session() as s:
        rows = list(s.scalars(select(m.LatestResult).where(m.LatestResult.point_code == code)))
    return sorted(rows, key=lambda r: (-STATUS_CODE.get(r.status, 0), r.check, r.target))


def point_results(store, code: str, since: datetime, until: datetime, check: str | None = None,
                  limit: int = 10000) -> list[m.Result]:
    """The results rows a point's reports received in a period wrote, oldest first. Since issue 21 a row is
    written only when its key says something new (collector/ingest/changes.py: first appearance, status or
    message class change, a value beyond the deadband, a heartbeat), so this is the history of changes, not
    every sample; every sample is in the reports themselves (reports_for_point, the evidence bundle)."""
    with store.session() as s:
        stmt = select(m.Result).where(m.Result.point_code == code, m.Result.received_at >= since,
                                      m.Result.received_at < until)
        if check:
            stmt = stmt.where(m.Result.check == check)
        return list(s.scalars(stmt.order_by(m.Result.received_at, m.Result.id).limit(limit)))


def reports_for_point(store, code: str, since: datetime, until: datetime, limit: int = 10000) -> list[dict]:
    with store.session() as s:
        rows = s.execute(select(m.Report.report_id, m.Report.seq, m.Report.collected_at, m.Report.received_at)
                         .where(m.Report.point_code == code, m.Report.received_at >= since,
                                m.Report.received_at < until)
                         .order_by(m.Report.id).limit(limit))
        return [{"report_id": r.report_id, "seq": r.seq, "collected_at": _aware(r.collected_at),
                 "received_at": _aware(r.received_at)} for r in rows]


def _json(raw):
    """A JSON column read as text (SQLite) or already decoded (psycopg); 'null' and NULL are None."""
    if raw is None or raw == "null":
        return None
    return json.loads(raw) if isinstance(raw, str) else raw


# -- evidence reads: streamed in batches (server-side cursor on PostgreSQL), never loaded whole ----------
def stream_report_rows(store, code: str, since: datetime, until: datetime, batch: int = 2000):
    """(report_id, received_at, prev_digest, digest, body, host JSON text) of a point's reports in a
    period, in storage order (the order of the hash chain)."""
    from sqlalchemy import Text, cast

    stmt = (select(m.Report.report_id, m.Report.received_at, m.Report.prev_digest, m.Report.digest,
                   m.Report.body, cast(m.Report.host, Text))
            .where(m.Report.point_code == code, m.Report.received_at >= since, m.Report.received_at < until)
            .order_by(m.Report.id))
    with store.engine.connect() as conn:
        for part in conn.execution_options(yield_per=batch).execute(stmt).partitions():
            yield from part


def stream_observations(store, code: str, since: datetime, until: datetime, batch: int = 5000):
    """(received_at as POSIX seconds, check, target, status, policy verdict) of a point's samples in a period,
    ordered by check and time, so each (check, target) series is in time order: one pass of
    collector/store/samples.py per check. Seconds are computed by the database: no datetime object per row.
    The policy verdict is the status of the agent.policy verdict of the sample's report (None: none)."""
    from collector.store.samples import by_report, checks_of

    for check in checks_of(store, code):
        for at, _pk, policy, _, keys in by_report(store, code, since, until, checks=(check,), epoch=True, batch=batch):
            for _check, target, (status,) in keys:
                yield at, check, target, status, policy


def last_messages(store, code: str, since: datetime, until: datetime, check: str, target: str) -> dict:
    """The last message of a (check, target) in a period, and the last one that was not ok, read from its
    samples (collector/store/samples.py): a sample's message is that of the key's row in force, which has
    the sample's message class (a change of class is a row) with the numbers of when the row was written."""
    from collector.store.samples import by_report

    last = bad = None
    for _at, _pk, _v, _, keys in by_report(store, code, since, until, columns=("status", "message"),
                                           checks=(check,), target=target):
        for _c, _t, (status, message) in keys:
            last = message
            if status != "ok":
                bad = message
    return {"last": last, "last_problem": bad}


def point_registration(store, code: str) -> dict | None:
    """The point's registry row and its agents with the fingerprints pinned at enrolment."""
    with store.session() as s:
        p = s.scalar(select(m.Point).where(m.Point.code == code))
        if p is None:
            return None
        agents = s.scalars(select(m.Agent).where(m.Agent.point_code == code).order_by(m.Agent.enrolled_at))
        return {
            "code": p.code, "name": p.name, "region": p.region_path, "profile": p.profile, "address": p.address,
            "expected_devices": p.expected_devices or [], "report_interval_s": p.report_interval_s,
            "simulated": p.simulated, "created_at": _aware(p.created_at),
            "agents": [{"agent_id": a.id, "hostname": a.hostname, "fingerprint": a.fingerprint or {},
                        "enrolled_at": _aware(a.enrolled_at), "revoked": a.revoked} for a in agents],
        }
