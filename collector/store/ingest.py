"""Storing reports: idempotent on report_id, hash-chained per point, latest state kept apart from history.

Written with SQLAlchemy Core (one INSERT per report for its primary key, one executemany for all results
of a batch, one upsert executemany for the latest state) because the ORM's unit of work cost several times
the database's own time per report.

Besides the agent's results the collector adds two results of its own to each report, so scoring and alerts
can use them like any other check: ``identity.matches_enrolment`` (the host fingerprint against the one
pinned at enrolment, 人机信息相符) and ``agent.clock_skew`` (agent clock against receive time).
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta, timezone

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from agent.wire import Report, rfc3339
from collector.evidence.chain import chain_digest
from collector.store import models as m
from collector.store.queries import SILENCE_INTERVALS

GENESIS = ""  # prev_digest of a point's first report
SKEW_WARN_S = 300.0  # |agent clock - collector clock| beyond this is flagged (a warning, never a rejection)
IDENTITY_CHECK = "identity.matches_enrolment"
SKEW_CHECK = "agent.clock_skew"

_R = m.Result.__table__
_L = m.LatestResult.__table__
_REP = m.Report.__table__
_S = m.PointState.__table__


def _encoder(**options):
    """``json.dumps(obj, **options)`` for dicts, minus building an encoder per call (≈40 calls a report).

    The C encoder is made once, without the circular-reference check (values come from parsed JSON, which
    has no cycles); the output is checked against json.dumps here, else json.dumps is used as it is.
    """
    enc = json.JSONEncoder(**options)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return enc.encode
    try:
        c = make(None, enc.default, json.encoder.encode_basestring if not enc.ensure_ascii else
                 json.encoder.encode_basestring_ascii, enc.indent, enc.key_separator, enc.item_separator,
                 enc.sort_keys, enc.skipkeys, enc.allow_nan)

        def encode(obj):
            return "".join(c(obj, 0))

        probe = {"b": [1, 2.5, None, True], "a": "上 \"\n", "c": {"z": 1e16, "y": -0.0}}
        if encode(probe) == json.dumps(probe, **options):
            return encode
    except Exception:  # another Python's C encoder: keep the documented path
        pass
    return enc.encode


_CANON = _encoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))  # the chained body's form
_PLAIN = _encoder(ensure_ascii=False)  # what json.dumps(x, ensure_ascii=False) writes
_INF = float("inf")


def _ts(ts):
    return None if ts is None else rfc3339(ts)


def _jsonable_details(d):
    if not d:
        return {}
    for v in d.values():  # parsed from JSON already in the common case: nothing to convert
        if not isinstance(v, (str, int, float, bool)) or (isinstance(v, float) and v != v):
            from agent.wire import _jsonable

            return _jsonable(d)
    return d


def _finite(v):
    # NaN and ±inf have no JSON form: stored as "no value", as the agent's own serialiser does.
    return None if isinstance(v, float) and (v != v or v in (_INF, -_INF)) else v


def report_dict(report: Report) -> dict:
    """Same shape as ``agent.wire.report_to_dict`` without dataclasses.asdict's deep copies."""
    h, fp = report.host, report.host.fingerprint
    stamps: dict = {}  # the results of one report mostly share a few observed_at values

    def ts(t):
        if t is None:
            return None
        try:
            return stamps[t]
        except KeyError:
            stamps[t] = text = rfc3339(t)
            return text

    return {
        "report_id": report.report_id, "seq": report.seq, "agent_id": report.agent_id,
        "point_code": report.point_code, "agent_version": report.agent_version,
        "collected_at": ts(report.collected_at), "sent_at": ts(report.sent_at),
        "host": {"hostname": h.hostname, "os": h.os, "boot_time": ts(h.boot_time),
                 "fingerprint": {"machine_id": fp.machine_id, "serial": fp.serial, "macs": list(fp.macs)}},
        "results": [{"check": r.check, "target": r.target, "status": r.status, "message": r.message,
                     "value": _finite(r.value), "unit": r.unit, "details": _jsonable_details(r.details),
                     "observed_at": ts(r.observed_at), "duration_ms": _finite(r.duration_ms)}
                    for r in report.results],
    }


def canonical_json(report: Report, as_dict: dict | None = None) -> str:
    """The chained body: sorted keys, no spaces, UTF-8 text (identical to json.dumps with those options)."""
    return _CANON(as_dict or report_dict(report))


def fingerprint_matches(pinned: dict | None, seen) -> tuple[bool, list[str]]:
    """Compare a reported fingerprint with the pinned one; returns (matches, names of differing parts).

    machine_id and serial must be equal where both are known; MAC lists must share at least one address
    (a USB adapter plugged in adds one, a changed board replaces them all).
    """
    if not pinned:
        return True, []
    diffs = []
    for name in ("machine_id", "serial"):
        a, b = (pinned.get(name) or "").strip().lower(), (getattr(seen, name) or "").strip().lower()
        if a and b and a != b:
            diffs.append(name)
    macs_a = {x.lower().replace("-", ":") for x in pinned.get("macs") or []}
    macs_b = {x.lower().replace("-", ":") for x in seen.macs or []}
    if macs_a and macs_b and not macs_a & macs_b:
        diffs.append("macs")
    return not diffs, diffs


def _collector_results(report: Report, received_at, pinned: dict | None, has_pin: bool) -> list[dict]:
    out = []
    skew = round((report.sent_at - received_at).total_seconds(), 3)
    bad = abs(skew) > SKEW_WARN_S
    out.append({"check": SKEW_CHECK, "target": "clock", "status": "warn" if bad else "ok", "value": skew,
                "unit": "s", "details": {"source": "collector", "threshold_s": SKEW_WARN_S},
                "message": (f"终端时钟与采集端相差 {skew:+.0f} 秒，超过 {SKEW_WARN_S / 60:.0f} 分钟，请校准时间"
                            if bad else f"终端时钟偏差 {skew:+.1f} 秒，正常")})
    if has_pin:
        ok, diffs = fingerprint_matches(pinned, report.host.fingerprint)
        out.append({"check": IDENTITY_CHECK, "target": "enrolment", "status": "ok" if ok else "fail",
                    "value": None, "unit": None, "details": {"source": "collector", "differs": diffs},
                    "message": "终端标识与注册时一致（人机信息相符）" if ok else
                    f"终端标识与注册时不一致（{'、'.join(_PART_CN[d] for d in diffs)}已变化），疑似更换终端"})
    return out


class _Sql:
    """The hot-path statements in the driver's own parameter style, executed with its executemany.

    SQLAlchemy's per-row bind processing cost more than the database's insert itself (profiled), so the
    three statements run per report are plain SQL; the values are what models.UtcDateTime/JSON would bind.
    """

    def __init__(self, mark: str, sqlite: bool):
        def marks(n):
            return ", ".join([mark] * n)

        self.ts = _sqlite_ts if sqlite else _pg_ts
        self.report = ("INSERT INTO reports (report_id, point_code, agent_id, seq, collected_at, sent_at, "
                       "received_at, agent_version, host, body, prev_digest, digest) "
                       f"VALUES ({marks(12)}) RETURNING id")
        self.result = ('INSERT INTO results (report_pk, point_code, "check", target, status, value, unit, '
                       f"message, details, observed_at, received_at) VALUES ({marks(11)})")
        self.state_short = (f"UPDATE point_state SET last_digest = {mark}, reports_total = {mark}, "
                            f"last_received_at = {mark} WHERE point_code = {mark}")
        # fingerprint_mismatch keeps its value when no enrolment is pinned (COALESCE of a NULL parameter).
        self.state_full = (f"UPDATE point_state SET last_digest = {mark}, reports_total = {mark}, "
                           f"last_received_at = {mark}, last_collected_at = {mark}, last_seq = {mark}, "
                           f"agent_id = {mark}, agent_version = {mark}, hostname = {mark}, os = {mark}, "
                           f"clock_skew_s = {mark}, seq_gaps = {mark}, "
                           f"fingerprint_mismatch = COALESCE({mark}, fingerprint_mismatch) "
                           f"WHERE point_code = {mark}")
        self.summary = (f"UPDATE point_state SET n_ok = {mark}, n_warn = {mark}, n_fail = {mark}, "
                        f"n_error = {mark}, silent_after = {mark} WHERE point_code = {mark}")
        self.latest = (
            'INSERT INTO latest_results (point_code, "check", target, status, value, unit, message, details, '
            f"observed_at, received_at, since, report_id) VALUES ({marks(12)}) "
            'ON CONFLICT (point_code, "check", target) DO UPDATE SET status = excluded.status, '
            "value = excluded.value, unit = excluded.unit, message = excluded.message, "
            "details = excluded.details, observed_at = excluded.observed_at, "
            "received_at = excluded.received_at, report_id = excluded.report_id, "
            "since = CASE WHEN latest_results.status = excluded.status THEN latest_results.since "
            "ELSE excluded.since END "
            "WHERE latest_results.observed_at <= excluded.observed_at")


def _memo(fn):
    cache: dict = {}

    def get(ts):
        try:
            return cache[ts]
        except KeyError:
            cache[ts] = value = fn(ts)
            return value

    return get


def _sqlite_ts(ts):
    # The text models.UtcDateTime stores on SQLite: naive UTC, microseconds, sorts as it compares.
    return None if ts is None else ts.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def _pg_ts(ts):
    return None if ts is None else ts.astimezone(timezone.utc)


_SQLITE = _Sql("?", True)
_PG = _Sql("%s", False)

_PART_CN = {"machine_id": "机器标识", "serial": "主板/BIOS 序列号", "macs": "网卡 MAC 地址"}


class _Pending:
    __slots__ = ("reports", "received_at", "result", "error")

    def __init__(self, reports, received_at):
        self.reports, self.received_at, self.result, self.error = reports, received_at, None, None


GROUP_MAX_REPORTS = 400
GROUP_SPAN = timedelta(seconds=1)  # requests received this close together may share one transaction


def ingest_reports(self, reports: list[Report], received_at=None) -> tuple[int, int]:
    """Store reports; returns (accepted, duplicates). Callers have checked ownership.

    Group commit: concurrent callers queue their reports, and whichever thread takes the ingest lock
    stores everything queued in one transaction (followers find their result ready when they get the
    lock). Per-transaction costs, which dominate a 40-result report, are paid once per group. A group's
    receive time is the latest of its members' (they arrived within GROUP_SPAN); a caller alone in its
    group, or one whose given time is far from the others' (tests, imports), keeps its own.
    """
    from collector.store import utcnow

    item = _Pending(reports, (received_at or utcnow()).astimezone(timezone.utc))
    with self._group_guard:
        self._group_queue.append(item)
    with self._ingest_lock:
        while item.result is None and item.error is None:  # ours may not fit the oldest group: go on
            with self._group_guard:
                group = _take_group(self._group_queue)
            _run_group(self, group)
    if item.error is not None:
        raise item.error
    return item.result


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


def _run_group(self, group: list[_Pending]) -> None:
    received_at = max(p.received_at for p in group)
    try:
        _, stored = _store_group(self, [r for p in group for r in p.reports], received_at)
    except Exception:
        if len(group) == 1:
            group[0].error = sys.exc_info()[1]
            return
        for p in group:  # one bad request must not fail the others: store them one by one
            try:
                p.result = _store_group(self, p.reports, p.received_at)[0]
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


def _store_group(self, reports, received_at) -> tuple[tuple[int, int], set[str]]:
    """One transaction; a report_id stored concurrently by another collector (unique constraint) makes
    the whole batch retry, and the second attempt counts it as a duplicate."""
    received_at = received_at.astimezone(timezone.utc)
    by_point: dict[str, list[Report]] = {}
    for r in reports:
        by_point.setdefault(r.point_code, []).append(r)
    for attempt in range(3):
        try:
            with self.write_session() as s:
                stored: set[str] = set()
                counts = _ingest(s, by_point, received_at, self.is_sqlite, stored)
                return counts, stored
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _ingest(s, by_point, received_at, is_sqlite: bool, stored_ids: set) -> tuple[int, int]:
    conn = s.connection()
    sql = _SQLITE if is_sqlite else _PG
    rec = sql.ts(received_at)
    ts = _memo(sql.ts)
    accepted = duplicates = 0
    # (report_pk, point, check, target, status, value, unit, message, details_json, observed_at) per result
    result_rows: list[tuple] = []
    latest: dict[tuple, tuple] = {}  # (point, check, target) -> (row, observed_at, report_id)
    state_short: list[tuple] = []
    state_full: list[tuple] = []
    # The point_state rows serialise writers of a point (FOR UPDATE on PostgreSQL, taken in code order so
    # two batches never deadlock; SQLite has one writer), so the hash chain and the duplicate check below
    # see every committed report.
    states = _lock_states(conn, sorted(by_point))
    every = [r for batch in by_point.values() for r in batch]
    seen = set(conn.execute(select(_REP.c.report_id).where(
        _REP.c.report_id.in_({r.report_id for r in every}))).scalars())
    pins = {a: fp for a, fp in conn.execute(select(m.Agent.id, m.Agent.fingerprint).where(
        m.Agent.id.in_({r.agent_id for r in every})))}
    for point_code in sorted(by_point):
        state, batch = states[point_code], by_point[point_code]
        last_digest = state["last_digest"] or GENESIS
        newest = None
        stored = 0
        for report in batch:
            if report.report_id in seen:
                duplicates += 1
                continue
            seen.add(report.report_id)
            as_dict = report_dict(report)
            body = _CANON(as_dict)
            digest = chain_digest(last_digest, body)
            pk = conn.exec_driver_sql(sql.report, (
                report.report_id, point_code, report.agent_id, report.seq, sql.ts(report.collected_at),
                sql.ts(report.sent_at), rec, report.agent_version,
                _PLAIN(as_dict["host"]), body, last_digest, digest)).scalar_one()
            last_digest = digest
            stored += 1
            stored_ids.add(report.report_id)
            extra = _collector_results(report, received_at, pins.get(report.agent_id),
                                       report.agent_id in pins)
            rid = report.report_id
            for r, d in zip(report.results, as_dict["results"], strict=True):  # d: made JSON-safe
                observed = r.observed_at or report.collected_at
                details = d["details"]
                row = (pk, point_code, r.check, r.target, r.status, d["value"], r.unit, r.message,
                       _PLAIN(details) if details else "{}", ts(observed))
                result_rows.append(row)
                _keep_newest(latest, row, observed, rid)
            for r in extra:
                row = (pk, point_code, r["check"], r["target"], r["status"], r["value"], r["unit"], r["message"],
                       _PLAIN(r["details"]), rec)
                result_rows.append(row)
                _keep_newest(latest, row, received_at, rid)
            # A backlog report (older than what we already have) extends history but must not roll back "now".
            if newest is None or report.collected_at >= newest[0].collected_at:
                newest = (report, extra)
        accepted += stored
        if stored:
            _state_row(sql, state, point_code, newest, last_digest, stored, rec, state_short, state_full)
    if state_short:
        conn.exec_driver_sql(sql.state_short, state_short)
    if state_full:
        conn.exec_driver_sql(sql.state_full, state_full)
    if result_rows:
        conn.exec_driver_sql(sql.result, [row + (rec,) for row in result_rows])
    if latest:
        conn.exec_driver_sql(sql.latest, [row[1:10] + (rec, row[9], rid) for row, _, rid in latest.values()])
        _summarize_states(conn, sql, sorted({row[1] for row, _, _ in latest.values()}), received_at)
    return accepted, duplicates


def _summarize_states(conn, sql, codes: list[str], received_at) -> None:
    """Per-status counters and the silence deadline on point_state, so the overview pages by SQL alone."""
    counts = {c: {"ok": 0, "warn": 0, "fail": 0, "error": 0} for c in codes}
    for code, status, n in conn.execute(select(_L.c.point_code, _L.c.status, func.count())
                                        .where(_L.c.point_code.in_(codes))
                                        .group_by(_L.c.point_code, _L.c.status)):
        counts[code][status] = n
    intervals = {code: n for code, n in conn.execute(
        select(m.Point.code, m.Point.report_interval_s).where(m.Point.code.in_(codes)))}
    conn.exec_driver_sql(sql.summary, [
        (c["ok"], c["warn"], c["fail"], c["error"],
         sql.ts(received_at + timedelta(seconds=SILENCE_INTERVALS * (intervals.get(code) or 60))), code)
        for code, c in counts.items()])


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
    ident = next((r for r in extra if r["check"] == IDENTITY_CHECK), None)
    full.append((last_digest, total, rec, sql.ts(report.collected_at), report.seq, report.agent_id,
                 report.agent_version, report.host.hostname, report.host.os,
                 next(r["value"] for r in extra if r["check"] == SKEW_CHECK), (state["seq_gaps"] or 0) + gap,
                 None if ident is None else ident["status"] != "ok", point_code))


def _keep_newest(latest: dict, row: tuple, observed, report_id: str) -> None:
    key = (row[1], row[2], row[3])
    cur = latest.get(key)
    if cur is None or observed >= cur[1]:
        latest[key] = (row, observed, report_id)


def _dialect_insert(dialect: str):
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert
