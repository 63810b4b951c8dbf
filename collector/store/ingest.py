"""Storing reports: idempotent on report_id, hash-chained per point, latest state kept apart from history.

Written with SQLAlchemy Core (one INSERT per report for its primary key, one executemany for all results
of a batch, one upsert executemany for the latest state) because the ORM's unit of work cost several times
the database's own time per report.

Each request arrives with the function that derives the collector's own results for it (collector/ingest/
derive.py), called inside the transaction with the enrolment pins and issued policies read there; they are
stored beside the agent's, and two of their facts (clock skew, fingerprint mismatch) on the point's state.
This module decides nothing about them: it persists what it is given.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from datetime import datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from agent.vocabulary import AGENT_POLICY
from agent.wire import Report
from collector.evidence.chain import chain_digest
from collector.ingest.changes import HEARTBEAT_S_DEFAULT, Tail, is_news
from collector.store import models as m
from collector.store.canonical import CANONICAL_JSON, PLAIN_JSON, report_dict
from collector.store.changewrite import (
    DUE_AT_ONCE,
    KeysetIds,
    carry_latest,
    keyset_of,
    read_tails,
    samples_of,
    summarize_states,
    write_tails,
)
from collector.store.ingestsql import PG, SQLITE, memo
from collector.store.policies import issued_on

GENESIS = ""  # prev_digest of a point's first report

_REP = m.Report.__table__
_S = m.PointState.__table__



_AGENTS = m.Agent.__table__


def _pins_on(conn, agent_ids) -> dict[str, dict | None]:
    """The fingerprint pinned at enrolment for each of these agents that enrolled (None: pinned nothing)."""
    return {a: fp for a, fp in conn.execute(select(_AGENTS.c.id, _AGENTS.c.fingerprint).where(
        _AGENTS.c.id.in_(set(agent_ids))))}


class _Pending:
    __slots__ = ("reports", "derive", "agents", "received_at", "result", "error")

    def __init__(self, reports, derive, agents, received_at):
        self.reports, self.derive, self.agents, self.received_at = reports, derive, agents, received_at
        self.result = self.error = None


GROUP_MAX_REPORTS = 400
GROUP_SPAN = timedelta(seconds=1)  # requests received this close together may share one transaction


class ReportWriter:
    """Stores reports for one store; returns (accepted, duplicates). Callers have checked ownership.

    Group commit: concurrent callers queue their reports, and whichever thread takes the ingest lock
    stores everything queued in one transaction (followers find their result ready when they get the
    lock). Per-transaction costs, which dominate a 40-result report, are paid once per group. A group's
    receive time is the latest of its members' (they arrived within GROUP_SPAN); a caller alone in its
    group, or one whose given time is far from the others' (tests, imports), keeps its own.
    """

    def __init__(self, store, silence_intervals: int, heartbeat_s: float = HEARTBEAT_S_DEFAULT,
                 thresholds: dict[str, tuple[float, ...]] | None = None):
        """``heartbeat_s``, ``thresholds`` ({check: values}): the news test's (collector/ingest/changes.py)."""
        self.store, self.silence_intervals = store, silence_intervals
        self.heartbeat_s, self.thresholds = heartbeat_s, thresholds or {}
        self.keysets = KeysetIds()
        self._ingest_lock = threading.Lock()
        self._group_guard = threading.Lock()
        self._group_queue: deque = deque()

    def write(self, reports: list[Report], derive, agents, received_at: datetime) -> tuple[int, int]:
        """``derive(pins, issued)``: report_id -> the collector's Derived results for each of these reports,
        given the enrolment pins of ``agents`` ({agent id: pinned fingerprint or None}, enrolled agents only)
        and the policy digests issued to their points (policies.issued). Both are read inside the group's
        transaction, once for the group: read per request in a session of their own, they took a pooled
        connection for every request, and under many concurrent agents the pool's waits and reconnects cost
        more than storing the report (benchmarks/README.md, ingest.py)."""
        item = _Pending(reports, derive, set(agents), received_at.astimezone(timezone.utc))
        with self._group_guard:
            self._group_queue.append(item)
        with self._ingest_lock:
            while item.result is None and item.error is None:  # ours may not fit the oldest group: go on
                with self._group_guard:
                    group = _take_group(self._group_queue)
                self._run_group(group)
        if item.error is not None:
            raise item.error
        return item.result

    def _run_group(self, group: list[_Pending]) -> None:
        received_at = max(p.received_at for p in group)
        try:
            _, stored = self._store_group(group, received_at)
        except Exception:
            if len(group) == 1:
                group[0].error = sys.exc_info()[1]
                return
            for p in group:  # one bad request must not fail the others: store them one by one
                try:
                    p.result = self._store_group([p], p.received_at)[0]
                except Exception as exc:  # handed to that request's own thread
                    p.error = exc
            return
        claimed: set[str] = set()
        for p in group:
            accepted = 0
            for r in p.reports:
                if r.report_id in stored and r.report_id not in claimed:
                    claimed.add(r.report_id)
                    accepted += 1
            p.result = (accepted, len(p.reports) - accepted)

    def _store_group(self, group: list[_Pending], received_at) -> tuple[tuple[int, int], set[str]]:
        """One transaction; a report_id stored concurrently by another collector (unique constraint) makes
        the whole batch retry, and the second attempt counts it as a duplicate."""
        received_at = received_at.astimezone(timezone.utc)
        by_point: dict[str, list[Report]] = {}
        for p in group:
            for r in p.reports:
                by_point.setdefault(r.point_code, []).append(r)
        for attempt in range(3):
            try:
                with self.store.write_session() as s:
                    conn = s.connection()
                    pins = _pins_on(conn, set().union(*(p.agents for p in group)))
                    issued = issued_on(conn, sorted(by_point))
                    derived = {k: v for p in group for k, v in p.derive(pins, issued).items()}
                    stored: set[str] = set()
                    counts = _ingest(s, by_point, derived, received_at, stored, self)
            except IntegrityError:
                self.keysets.rollback()
                if attempt == 2:
                    raise
                continue
            except BaseException:
                self.keysets.rollback()  # keyset ids of a transaction that did not commit are not known
                raise
            self.keysets.commit()
            return counts, stored
        raise AssertionError("unreachable")


def _take_group(queue) -> list[_Pending]:
    """The oldest queued request and those that fit with it (size, receive time); the rest stay queued."""
    first = queue.popleft()
    group, size, rest = [first], len(first.reports), []
    while queue:
        nxt = queue.popleft()
        if (size + len(nxt.reports) <= GROUP_MAX_REPORTS
                and abs(nxt.received_at - first.received_at) <= GROUP_SPAN):
            group.append(nxt)
            size += len(nxt.reports)
        else:
            rest.append(nxt)
    queue.extendleft(reversed(rest))
    return group


def _ingest(s, by_point, derived, received_at, stored_ids: set, writer: ReportWriter) -> tuple[int, int]:
    conn = s.connection()
    sql = SQLITE if writer.store.is_sqlite else PG
    ts = memo(sql.ts)
    heartbeat_s, thresholds = writer.heartbeat_s, writer.thresholds
    accepted = duplicates = 0
    # (report_pk, point, check, target, status, value, unit, message, details_json, observed_at) per row
    result_rows: list[tuple] = []
    # (point, check, target) -> (row or None: carried, rank, report_id); rank: _rank_of
    latest: dict[tuple, tuple] = {}
    # The newest row of each key written here: upserted even where a later report carried the key without
    # a row (that report says what the row said; the carry then moves its time and report).
    newest_rows: dict[tuple, tuple] = {}
    carries: dict[str, tuple] = {}  # report_id -> (point, keyset_id, keys it carried without a row)
    members_of: dict[str, tuple] = {}
    written: dict[tuple, tuple] = {}  # the tails to write
    recount: set[str] = set()  # points whose latest statuses may have changed
    state_short: list[tuple] = []
    state_full: list[tuple] = []
    # The point_state rows serialise writers of a point (FOR UPDATE on PostgreSQL, taken in code order so
    # two batches never deadlock; SQLite has one writer), so the hash chain, the duplicate check and the
    # tails below see every committed report.
    states = _lock_states(conn, sorted(by_point))
    # Never stamped before the point's last report (another collector's clock, a step back of this one): the
    # history readers walk receive order, the news test storage order, and the two must be one order.
    rec_of = {c: sql.ts(max(received_at, states[c]["last_received_at"] or received_at)) for c in by_point}
    tails = read_tails(conn, sql, sorted(by_point))
    every = [r for batch in by_point.values() for r in batch]
    seen = set(conn.execute(select(_REP.c.report_id).where(
        _REP.c.report_id.in_({r.report_id for r in every}))).scalars())
    touched: list[str] = []
    order = 0  # samples in storage order: a key twice in one report ranks by position, as history reads it
    for point_code in sorted(by_point):
        state, batch = states[point_code], by_point[point_code]
        last_digest = state["last_digest"] or GENESIS
        front = state["last_collected_at"]  # the collection time "now" rests on
        newest = None
        stored = 0
        for report in batch:
            if report.report_id in seen:
                duplicates += 1
                continue
            seen.add(report.report_id)
            as_dict = report_dict(report)
            body = CANONICAL_JSON(as_dict)
            digest = chain_digest(last_digest, body)
            extra = derived[report.report_id]
            rid = report.report_id
            rec = rec_of[point_code]
            samples = samples_of(report, as_dict, extra, received_at, ts, rec)
            members, key_digest = keyset_of((x[0], x[1]) for x in samples)
            keyset_id = writer.keysets.id_of(conn, sql, point_code, members, key_digest)
            verdict = next((r["status"] for r in extra.rows if r["check"] == AGENT_POLICY), None)
            pk = conn.exec_driver_sql(sql.report, (
                report.report_id, point_code, report.agent_id, report.seq, sql.ts(report.collected_at),
                sql.ts(report.sent_at), rec, report.agent_version,
                PLAIN_JSON(as_dict["host"]), body, last_digest, digest, keyset_id, verdict)).scalar_one()
            last_digest = digest
            stored += 1
            stored_ids.add(report.report_id)
            # A backlog report (older than what we already have) extends history but must not roll back "now".
            current = front is None or report.collected_at >= front
            if current:
                front = report.collected_at
            twice = {k for k in members if sum(1 for x in samples if (x[0], x[1]) == k) > 1} \
                if len(members) < len(samples) else ()
            carried = []
            for check, target, status, value, unit, message, details, observed, observed_ts in samples:
                order += 1
                key = (point_code, check, target)
                tail = tails.get(key)
                if (check, target) in twice or is_news(tail, status, message, value, unit, details, received_at,
                                                       heartbeat_s, thresholds.get(check, ()), check):
                    row = (pk, point_code, check, target, status, value, unit, message, details, observed_ts)
                    result_rows.append(row)
                    if tail is None or tail.status != status or tail.written_at == DUE_AT_ONCE or not current:
                        recount.add(point_code)
                    at = received_at if current else DUE_AT_ONCE
                    tails[key] = Tail(status, message, value, details, at)
                    written[key] = (status, message, value, details, at, pk)
                    rank = _rank_of(current, order, observed)
                    _keep_newest(latest, key, row, rank, rid)
                    _keep_newest(newest_rows, key, row, rank, rid)
                elif current:
                    carried.append(key)
                    _keep_newest(latest, key, None, _rank_of(True, order, observed), rid)
            if carried:
                carries[rid] = (point_code, keyset_id, carried)
                members_of[rid] = members
            if newest is None or report.collected_at >= newest[0].collected_at:
                newest = (report, extra)
        accepted += stored
        if stored:
            touched.append(point_code)
            _state_row(sql, state, point_code, newest, last_digest, stored, rec_of[point_code], state_short, state_full)
    if state_short:
        conn.exec_driver_sql(sql.state_short, state_short)
    if state_full:
        conn.exec_driver_sql(sql.state_full, state_full)
    if result_rows:
        conn.exec_driver_sql(sql.result, [row + (rec_of[row[1]],) for row in result_rows])
    write_tails(conn, sql, written)
    for statement, of_current in ((sql.latest, True), (sql.latest_backlog, False)):
        # (a backlog row of a key a current report of this transaction holds is history only)
        upserts = [row[1:10] + (rec_of[row[1]], row[9], rid) for key, (row, rank, rid) in newest_rows.items()
                   if rank[0] == of_current and (of_current or not latest[key][1][0])]
        if upserts:
            conn.exec_driver_sql(statement, upserts)
    carries = {rid: (code, ks, [k[1:] for k in keys if latest[k][0] is None and latest[k][2] == rid])
               for rid, (code, ks, keys) in carries.items()}
    carry_latest(conn, sql, {rid: c for rid, c in carries.items() if c[2]}, members_of, latest, rec_of)
    if touched:
        summarize_states(conn, sql, touched, recount, received_at, writer.silence_intervals)
    return accepted, duplicates


def _lock_states(conn, codes: list[str]) -> dict[str, dict]:
    def select_locked(wanted):
        stmt = select(_S).where(_S.c.point_code.in_(wanted)).order_by(_S.c.point_code).with_for_update()
        return {row["point_code"]: dict(row) for row in conn.execute(stmt).mappings()}

    states = select_locked(codes)
    missing = [c for c in codes if c not in states]
    if missing:
        ins = _dialect_insert(conn.dialect.name)(_S)
        conn.execute(ins.on_conflict_do_nothing(index_elements=["point_code"]),
                     [{"point_code": c, "last_digest": "", "seq_gaps": 0, "reports_total": 0,
                       "fingerprint_mismatch": False} for c in missing])
        states.update(select_locked(missing))
    return states


def _state_row(sql, state, point_code, newest, last_digest, stored, rec, short: list, full: list) -> None:
    """The point_state update for one point, as parameters of one of two fixed statements (executemany)."""
    report, extra = newest
    total = (state["reports_total"] or 0) + stored
    prev = state["last_collected_at"]
    if prev is not None and report.collected_at < prev:
        short.append((last_digest, total, rec, point_code))
        return
    gap = 0
    if state["last_seq"] is not None and report.seq > state["last_seq"] + 1:
        gap = 1  # counted once per hole the agent's counter shows
    full.append((last_digest, total, rec, sql.ts(report.collected_at), report.seq, report.agent_id,
                 report.agent_version, report.host.hostname, report.host.os, extra.clock_skew_s,
                 (state["seq_gaps"] or 0) + gap, extra.fingerprint_mismatch, point_code))


def _rank_of(current: bool, order: int, observed) -> tuple:
    """Which sample of a key is "now": a current report's over any backlog one, and among current reports
    the later stored (history's order: an earlier observed_at in a later report is still its state);
    among backlog reports the later observed."""
    return (True, order, observed) if current else (False, observed, order)


def _keep_newest(latest: dict, key: tuple, row: tuple | None, rank: tuple, report_id: str) -> None:
    cur = latest.get(key)
    if cur is None or rank >= cur[1]:
        latest[key] = (row, rank, report_id)


def _dialect_insert(dialect: str):
    from collector.store import dialect_insert

    return dialect_insert(dialect)
