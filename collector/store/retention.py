"""Retention: hourly roll-ups for long charts, pruning of raw history, expiry of sessions and codes.

``run_maintenance`` is what the background task calls on every collector. It runs once across all
collectors on a database: under a PostgreSQL advisory lock (try-lock: a collector that finds it taken
skips the round), and only when ``job_state`` says the last run is older than the interval. SQLite stores
belong to one process, where a plain lock does the same.

Roll-ups are by receive hour (periods are judged by receive time) and only for hours that ended at least
``SETTLE`` ago, so a transaction stamped just before the hour that commits just after it is still counted.
Raw results are never pruned past the roll-up watermark. Pruning removes whole reports (with their
results), oldest first, except each key's row still in force for the kept reports, which moves onto the
point's first kept report; the evidence chain of what remains starts at the oldest kept report's prev_digest.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, func, insert, select, text, update

from agent.vocabulary import STATUSES
from collector.store import models as m
from collector.store.historymodels import ResultHourly, ResultTail
from collector.store.samples import by_report

MAINTENANCE_LOCK = 0x6D61696E  # "main"
JOB = "maintenance"
SETTLE = timedelta(minutes=5)
WINDOW = timedelta(hours=24)
_local_lock = threading.Lock()


@dataclass
class RetentionPolicy:
    raw_days: int = 400  # scoring periods run a year; a little over it
    interval_s: int = 3600
    batch: int = 5000
    enroll_code_days: int = 30

    @classmethod
    def from_settings(cls, settings) -> RetentionPolicy:
        conf = (getattr(settings, "extra", None) or {}).get("retention") or {}
        policy = cls()
        for key in ("raw_days", "interval_s", "batch", "enroll_code_days"):
            if key in conf:
                value = int(conf[key])
                if value <= 0:
                    raise ValueError(f"retention.{key} must be positive")
                setattr(policy, key, value)
        return policy


def runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _floor_hour(ts: datetime) -> datetime:
    return ts.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def rollup(store, now: datetime | None = None) -> int:
    """Roll results up by receive hour up to the last settled hour; returns the hours processed."""
    from collector.store import utcnow

    end = _floor_hour((now or utcnow()) - SETTLE)
    hours = 0
    while True:
        with store.write_session() as s:
            state = _job_state(s, "rollup")
            start = state.watermark
            if start is None:
                first = s.scalar(select(func.min(m.Report.received_at)))
                start = _floor_hour(first) if first is not None else end
            if start >= end:
                state.watermark = start
                return hours
            stop = min(start + WINDOW, end)
            _rollup_window(store, s, start, stop)
            state.watermark = stop
            hours += int((stop - start).total_seconds() // 3600)


def _rollup_window(store, s, start: datetime, stop: datetime) -> None:
    """Counts per status per receive hour of every key's samples (collector/store/samples.py: a report that
    carried the key, with the status of its row in force, not only the rows), and the samples' value average
    and maximum."""
    h = ResultHourly.__table__
    conn = s.connection()
    codes = list(conn.execute(select(m.Report.point_code).where(
        m.Report.received_at >= start, m.Report.received_at < stop).distinct()).scalars())
    s.execute(delete(h).where(h.c.hour >= start, h.c.hour < stop))
    at_of = {st: i for i, st in enumerate(STATUSES)}
    for code in sorted(codes):
        acc: dict[tuple, list] = {}
        for at, _pk, _v, _, keys in by_report(store, code, start, stop, columns=("status", "value"), conn=conn):
            hour = _floor_hour(at if at.tzinfo else at.replace(tzinfo=timezone.utc))
            for check, target, (status, value) in keys:
                a = acc.get((check, target, hour))
                if a is None:
                    a = acc[(check, target, hour)] = [0] * len(STATUSES) + [0.0, 0, None]
                a[at_of[status]] += 1
                if value is not None:
                    a[-3] += value
                    a[-2] += 1
                    a[-1] = value if a[-1] is None else max(a[-1], value)
        if acc:
            conn.execute(insert(h), [
                {"point_code": code, "check": check, "target": target,
                 "hour": hour,
                 **{f"n_{st}": a[i] for i, st in enumerate(STATUSES)},
                 "value_avg": a[-3] / a[-2] if a[-2] else None, "value_max": a[-1]}
                for (check, target, hour), a in acc.items()])


def prune(store, policy: RetentionPolicy, now: datetime | None = None) -> dict:
    from collector.store import utcnow

    now = now or utcnow()
    cutoff = now - timedelta(days=policy.raw_days)
    with store.write_session() as s:
        mark = _job_state(s, "rollup").watermark
    cutoff = min(cutoff, mark) if mark is not None else None
    reports = results = 0
    while cutoff is not None:
        with store.write_session() as s:
            ids = list(s.scalars(select(m.Report.id).where(m.Report.received_at < cutoff)
                                .order_by(m.Report.id).limit(policy.batch)))
            if not ids:
                break
            _carry_in_force(s, ids, cutoff)
            results += s.execute(delete(m.Result).where(m.Result.report_pk.in_(ids))).rowcount or 0
            reports += s.execute(delete(m.Report).where(m.Report.id.in_(ids))).rowcount or 0
    with store.write_session() as s:
        sessions = s.execute(delete(m.WebSession).where(m.WebSession.expires_at < now)).rowcount or 0
        codes = s.execute(delete(m.EnrollCode).where(
            m.EnrollCode.expires_at < now - timedelta(days=policy.enroll_code_days))).rowcount or 0
    return {"reports": reports, "results": results, "sessions": sessions, "enroll_codes": codes}


def _carry_in_force(s, ids: list[int], cutoff: datetime) -> None:
    """Keep each key's newest row among the reports about to go, moved onto its point's first kept report.

    Ingest writes a row only when a key says something new, so a kept report that carried a key without a row
    of its own shows the state of the key's latest row before it (collector/store/samples.py); pruning that
    row would leave the kept reports with nothing seen. The row keeps its receive time (it still reads as
    the state in force before the kept report) and is dropped where that report has its own row of the key.
    A point with no kept report loses its rows and tails alike: its next report writes every key afresh."""
    r = m.Result.__table__
    newest: dict[tuple[str, str, str], tuple] = {}
    for row in s.execute(select(r.c.id, r.c.received_at, r.c.point_code, r.c.check, r.c.target)
                         .where(r.c.report_pk.in_(ids))):
        key = (row.point_code, row.check, row.target)
        if key not in newest or (row.received_at, row.id) > newest[key][:2]:
            newest[key] = (row.received_at, row.id)
    by_point: dict[str, list] = {}
    for (code, check, target), (_at, row_id) in newest.items():
        by_point.setdefault(code, []).append((check, target, row_id))
    tails = ResultTail.__table__
    first_of = {code: _first_kept(s, code, cutoff) for code in sorted(by_point)}
    orphans = [code for code, first in first_of.items() if first is None]
    if orphans:
        # Ingest holds a point's point_state row (FOR UPDATE) while it reads the tails and decides what to
        # carry. Taken here for the points about to lose every row (locking a whole batch's points stalled
        # ingest for the batch), in code order and before this transaction writes anything (so no deadlock
        # with ingest's locks), a report being stored meanwhile is either committed before the second look
        # or sees the tails this prune leaves.
        s.execute(select(m.PointState.point_code).where(m.PointState.point_code.in_(orphans))
                  .order_by(m.PointState.point_code).with_for_update())
        first_of.update({code: _first_kept(s, code, cutoff) for code in orphans})
    for code, keys in sorted(by_point.items()):
        first = first_of[code]
        if first is None:
            for check, target, _ in keys:
                s.execute(delete(tails).where(tails.c.point_code == code, tails.c.check == check,
                                              tails.c.target == target, tails.c.report_pk.in_(ids)))
            continue
        own = {(c, t) for c, t in s.execute(select(r.c.check, r.c.target).where(
            r.c.report_pk == first.id, r.c.received_at >= first.received_at))}
        for check, target, row_id in keys:
            if (check, target) in own:
                continue
            key_where = (r.c.point_code == code, r.c.check == check, r.c.target == target)
            # a row carried by an earlier batch is superseded by this newer one
            s.execute(delete(r).where(*key_where, r.c.report_pk == first.id,
                                      r.c.received_at < first.received_at))
            s.execute(update(r).where(r.c.id == row_id).values(report_pk=first.id))
            s.execute(update(tails).where(tails.c.point_code == code, tails.c.check == check,
                                          tails.c.target == target, tails.c.report_pk.in_(ids))
                      .values(report_pk=first.id))


def _first_kept(s, code: str, cutoff: datetime):
    return s.execute(select(m.Report.id, m.Report.received_at)
                     .where(m.Report.point_code == code, m.Report.received_at >= cutoff)
                     .order_by(m.Report.received_at, m.Report.id).limit(1)).first()


def _job_state(s, name: str) -> m.JobState:
    row = s.get(m.JobState, name)
    if row is None:
        row = m.JobState(name=name, runs=0)
        s.add(row)
        s.flush()
    return row


def run_maintenance(store, policy: RetentionPolicy | None = None, now: datetime | None = None,
                    force: bool = False, runner: str | None = None) -> dict | None:
    """Roll up and prune if due; None when another collector holds the lock or the last run is recent."""
    from collector.store import utcnow

    policy = policy or RetentionPolicy()
    now = now or utcnow()
    with _job_lock(store) as held:
        if not held:
            return None
        with store.write_session() as s:
            state = _job_state(s, JOB)
            if not force and state.last_run_at is not None and \
                    now - state.last_run_at < timedelta(seconds=policy.interval_s):
                return None
        hours = rollup(store, now)
        pruned = prune(store, policy, now)
        summary = {"rolled_up_hours": hours, "pruned": pruned, "runner": runner or runner_name()}
        with store.write_session() as s:
            s.execute(update(m.JobState).where(m.JobState.name == JOB).values(
                last_run_at=now, runs=m.JobState.runs + 1, last_runner=summary["runner"], details=summary))
        return summary


class _job_lock:
    """Context manager yielding True when this process may run the job now (try-lock, never waits)."""

    def __init__(self, store):
        self.store, self.conn, self.held = store, None, False

    def __enter__(self) -> bool:
        if self.store.is_sqlite:
            self.held = _local_lock.acquire(blocking=False)
            return self.held
        self.conn = self.store.engine.connect()
        self.held = bool(self.conn.execute(text("SELECT pg_try_advisory_lock(:k)"),
                                           {"k": MAINTENANCE_LOCK}).scalar())
        self.conn.commit()
        return self.held

    def __exit__(self, *exc) -> None:
        if self.store.is_sqlite:
            if self.held:
                _local_lock.release()
            return
        try:
            if self.held:
                self.conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MAINTENANCE_LOCK})
                self.conn.commit()
        finally:
            self.conn.close()


def hourly(store, code: str, since: datetime, until: datetime, check: str | None = None) -> list[ResultHourly]:
    with store.session() as s:
        stmt = select(ResultHourly).where(ResultHourly.point_code == code, ResultHourly.hour >= since,
                                            ResultHourly.hour < until)
        if check:
            stmt = stmt.where(ResultHourly.check == check)
        return list(s.scalars(stmt.order_by(ResultHourly.hour, ResultHourly.check, ResultHourly.target)))
