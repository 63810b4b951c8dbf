"""The parts of ingest that store only what changed (issue 21): keysets, result tails, and moving "now".

A report's results become results rows only where collector/ingest/changes.py says a sample is news; the
report names the keys it carried (its keyset, historymodels.py), so the samples in between are known: a key's
state in a report is that of its latest row at or before it. This module finds or creates a report's keyset,
reads and writes the tails the news test compares with, and moves latest_results for the keys a report
carried without a row (their status is their last row's; their receive time and report are this report's).
ingest.py calls it inside its transaction, holding the point_state locks of the points it writes.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

from agent.vocabulary import zero_counts
from collector.ingest.changes import Tail
from collector.store.canonical import PLAIN_JSON
from collector.store.rawread import fetch_all

# The written_at of a tail whose row did not become the point's latest state (a backlog report, older than
# what "now" holds): its heartbeat is due at once, so the key's next sample of a newer report is written and
# brings latest_results back to what that report said (a carried key's latest is its last row, unmoved).
DUE_AT_ONCE = datetime(1970, 1, 1, tzinfo=timezone.utc)
CACHE_MAX = 200_000  # keyset ids remembered per process (a point has a few: one per device line-up)


def keyset_of(keys) -> tuple[tuple[tuple[str, str], ...], str]:
    """(sorted unique (check, target)s, sha256 hex of them as a JSON list: unambiguous for any text)."""
    members = tuple(sorted(set(keys)))
    text = json.dumps(members, ensure_ascii=False, separators=(",", ":"))
    return members, hashlib.sha256(text.encode("utf-8")).hexdigest()


class KeysetIds:
    """Keyset ids by (point, digest). ``known`` holds only ids read from or committed to the database (a
    keyset row never changes once written, so they stay true); ids found in a transaction wait in
    ``pending`` until the writer has committed it (``commit``), and are dropped if it rolled back."""

    def __init__(self):
        self.known: dict[tuple[str, str], int] = {}
        self.pending: dict[tuple[str, str], int] = {}

    def commit(self) -> None:
        if len(self.known) + len(self.pending) > CACHE_MAX:
            self.known.clear()
        self.known.update(self.pending)
        self.pending.clear()

    def rollback(self) -> None:
        self.pending.clear()

    def id_of(self, conn, sql, point_code: str, members, digest: str) -> int:
        key = (point_code, digest)
        found = self.known.get(key) or self.pending.get(key)
        if found is not None:
            return found
        # Several collectors on one PostgreSQL: the insert of a keyset another transaction is inserting waits
        # for it (the unique index) and then does nothing; the select that follows sees it, committed.
        row = conn.exec_driver_sql(sql.keyset_insert, (point_code, digest)).first()
        if row is not None:
            conn.exec_driver_sql(sql.keyset_member, [(row[0], c, t) for c, t in members])
            found = row[0]
        else:
            found = conn.exec_driver_sql(sql.keyset_select, (point_code, digest)).scalar_one()
        self.pending[key] = found
        return found


def read_tails(conn, sql, codes: list[str]) -> dict[tuple[str, str, str], Tail]:
    """{(point, check, target): Tail} of these points, in one statement."""
    marks = ", ".join([sql.mark] * len(codes))
    parsed: dict = {}  # a point's keys mostly share the time they were written at

    def parse(written, convert=_parse_sqlite_ts if sql.sqlite else _aware):
        at = parsed.get(written)
        if at is None:
            at = parsed[written] = convert(written)
        return at

    return {(code, check, target): Tail(status, message, value, details, parse(written))
            for code, check, target, status, message, value, details, written in fetch_all(
                conn, 'SELECT point_code, "check", target, status, message, value, details, written_at '
                      f"FROM result_tails WHERE point_code IN ({marks})", tuple(codes))}


def write_tails(conn, sql, written: dict[tuple[str, str, str], tuple]) -> None:
    """Upsert the tails of the keys written: {(point, check, target): (status, message, value, details,
    written_at, report_pk)}."""
    if written:
        conn.exec_driver_sql(sql.tail_upsert, [
            (code, check, target, status, message, value, details, sql.ts(at), pk)
            for (code, check, target), (status, message, value, details, at, pk) in written.items()])


def carry_latest(conn, sql, carries: dict, members_of: dict, candidates: dict, rec_of: dict) -> None:
    """Move received_at and report_id of latest_results to the report that carried a key without a row.

    ``carries``: {report_id: (point, keyset_id, [keys whose newest sample is that report's, unwritten])};
    ``members_of``: {report_id: its keyset's members}; ``candidates``: {(point, check, target): (row or
    None, rank, report_id)}, the sample of each key that is "now" after this transaction (ingest.py's
    _rank_of). Where every member of a
    report's keyset has its newest sample in that report (the usual case: one report of the point, or the
    last of an agent's backlog), one statement over the keyset moves them all (the keys it wrote too, to
    the values their upsert just gave); otherwise only the carried keys, one by one. ``rec_of``: each point's
    receive time as bound."""
    whole, single = [], []
    for rid, (code, keyset_id, keys) in carries.items():
        if all(candidates[(code, c, t)][2] == rid for c, t in members_of[rid]):
            whole.append((rec_of[code], rid, code, keyset_id))
        else:
            single.extend((rec_of[code], rid, code, c, t) for c, t in keys)
    if whole:
        conn.exec_driver_sql(sql.carry_keyset, whole)
    if single:
        conn.exec_driver_sql(sql.carry_key, single)


def statements(mark: str) -> dict[str, str]:
    """The statements of this module in the driver's parameter style (ingest.py's _Sql holds them)."""
    return {
        "keyset_insert": (f"INSERT INTO keysets (point_code, digest) VALUES ({mark}, {mark}) "
                          "ON CONFLICT (point_code, digest) DO NOTHING RETURNING id"),
        "keyset_select": f"SELECT id FROM keysets WHERE point_code = {mark} AND digest = {mark}",
        "keyset_member": f'INSERT INTO keyset_members (keyset_id, "check", target) VALUES ({mark}, {mark}, {mark})',
        "tail_upsert": (
            'INSERT INTO result_tails (point_code, "check", target, status, message, value, details, '
            f"written_at, report_pk) VALUES ({', '.join([mark] * 9)}) "
            'ON CONFLICT (point_code, "check", target) DO UPDATE SET status = excluded.status, '
            "message = excluded.message, value = excluded.value, details = excluded.details, "
            "written_at = excluded.written_at, report_pk = excluded.report_pk"),
        "carry_keyset": (f"UPDATE latest_results SET received_at = {mark}, report_id = {mark} "
                         f'WHERE point_code = {mark} AND ("check", target) IN '
                         f'(SELECT "check", target FROM keyset_members WHERE keyset_id = {mark})'),
        "carry_key": (f"UPDATE latest_results SET received_at = {mark}, report_id = {mark} "
                      f'WHERE point_code = {mark} AND "check" = {mark} AND target = {mark}'),
        "silent": f"UPDATE point_state SET silent_after = {mark} WHERE point_code = {mark}",
    }


def samples_of(report, as_dict: dict, extra, received_at, ts, rec) -> list[tuple]:
    """(check, target, status, value, unit, message, details JSON, observed, observed as bound) of every
    result of a report: the agent's, then the collector's derived rows (observed when received)."""
    out = []
    for r, d in zip(report.results, as_dict["results"], strict=True):  # d: made JSON-safe
        observed = r.observed_at or report.collected_at
        details = d["details"]
        out.append((r.check, r.target, r.status, d["value"], r.unit, r.message,
                    PLAIN_JSON(details) if details else "{}", observed, ts(observed)))
    for r in extra.rows:
        out.append((r["check"], r["target"], r["status"], r["value"], r["unit"], r["message"],
                    PLAIN_JSON(r["details"]), received_at, rec))
    return out


def summarize_states(conn, sql, codes: list[str], recount: set[str], received_at, silence_intervals: int) -> None:
    """Per-status counters and the silence deadline on point_state, so the overview pages by SQL alone. The
    counters are counted again only where a latest status may have changed (``recount``); the deadline
    moves with every report."""
    marks = ", ".join([sql.mark] * len(codes))
    intervals = dict(conn.exec_driver_sql(
        f"SELECT code, report_interval_s FROM points WHERE code IN ({marks})", tuple(codes)).all())

    def silent_after(code):
        return sql.ts(received_at + timedelta(seconds=silence_intervals * (intervals.get(code) or 60)))

    again = [c for c in codes if c in recount]
    rest = [(silent_after(c), c) for c in codes if c not in recount]
    if rest:
        conn.exec_driver_sql(sql.silent, rest)
    if not again:
        return
    counts = {c: zero_counts() for c in again}
    marks = ", ".join([sql.mark] * len(again))
    for code, status, n in conn.exec_driver_sql(
            f"SELECT point_code, status, count(*) FROM latest_results WHERE point_code IN ({marks}) "
            "GROUP BY point_code, status", tuple(again)):
        counts[code][status] = n
    conn.exec_driver_sql(sql.summary, [
        (c["ok"], c["warn"], c["fail"], c["error"], silent_after(code), code) for code, c in counts.items()])


def _parse_sqlite_ts(text) -> datetime:
    if isinstance(text, datetime):
        return _aware(text)
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
