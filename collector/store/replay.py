"""The samples of a point's reports since its alert watermark, for the alert engine to replay (issue 21).

Ingest writes a results row only when a key says something new; the reports in between name the keys they
carried (keysets, historymodels.py), and a key's state in a report is that of its latest row at or before
it. The engine counts streaks and for-durations per sample, so it is handed every sample, as it was when
every sample was a row: for each report since the watermark, in storage order, a row per key it carried,
its own results row where it wrote one, otherwise the key's state then (its time: the report's collection,
as an agent's result is observed at most then, never later than the report's receipt; the collector's own
results: the receipt, when they are observed). Reports stored before migration 0011 (no keyset) are their
rows.

The rows are REPLAY_COLUMNS tuples: (report id, check, target, status, value, message, details, observed
at, received at).
"""

from __future__ import annotations

import json

from sqlalchemy import func, select

from agent.vocabulary import COLLECTOR_CHECK_IDS
from collector.store import models as m
from collector.store.historymodels import KeysetMember, ResultTail

REPLAY_COLUMNS = (m.Result.report_pk, m.Result.check, m.Result.target, m.Result.status, m.Result.value,
                  m.Result.message, m.Result.details, m.Result.observed_at, m.Result.received_at)
_R = m.Result


def samples_since_watermarks(conn, codes: list[str], limit: int | None = None) -> dict[str, list[tuple]]:
    """{code: the REPLAY_COLUMNS samples of its reports stored after its watermark, oldest first, at most
    ``limit`` of them (cut as the rows were: the engine replays a cut report again next time)}."""
    out: dict[str, list[tuple]] = {code: [] for code in codes}
    if not codes:
        return out
    wm = func.coalesce(m.PointState.alerts_evaluated_report, 0)
    marks: dict[str, int] = {}
    reports: dict[str, list[tuple]] = {}
    for code, mark, pk, keyset_id, collected, received in conn.execute(
            select(m.Report.point_code, wm, m.Report.id, m.Report.keyset_id, m.Report.collected_at,
                   m.Report.received_at)
            .join(m.PointState, m.PointState.point_code == m.Report.point_code)
            .where(m.Report.point_code.in_(codes), m.Report.id > wm).order_by(m.Report.point_code, m.Report.id)):
        marks[code] = mark
        reports.setdefault(code, []).append((pk, keyset_id, collected, received))
    if not reports:
        return out
    members: dict[int, list[tuple[str, str]]] = {}
    keysets = sorted({r[1] for rs in reports.values() for r in rs if r[1] is not None})
    for i in range(0, len(keysets), 500):
        for keyset_id, check, target in conn.execute(
                select(KeysetMember.keyset_id, KeysetMember.check, KeysetMember.target)
                .where(KeysetMember.keyset_id.in_(keysets[i:i + 500]))
                .order_by(KeysetMember.keyset_id, KeysetMember.check, KeysetMember.target)):
            members.setdefault(keyset_id, []).append((check, target))
    rows: dict[int, list[tuple]] = {}
    for row in conn.execute(
            select(*REPLAY_COLUMNS).join(m.Report, _R.report_pk == m.Report.id)
            .join(m.PointState, m.PointState.point_code == m.Report.point_code)
            .where(m.Report.point_code.in_(sorted(reports)), m.Report.id > wm).order_by(_R.report_pk, _R.id)):
        rows.setdefault(row[0], []).append(tuple(row))
    tails = _tails(conn, sorted(reports))
    for code, rs in reports.items():
        out[code] = _expand(conn, code, marks[code], rs, members, rows, tails.get(code, {}), limit)
    return out


def _expand(conn, code, mark, reports, members, rows, tails, limit) -> list[tuple]:
    state: dict[tuple[str, str], tuple] = {}  # (check, target) -> (status, value, message, details)
    out: list[tuple] = []
    for pk, keyset_id, collected, received in reports:
        own = rows.get(pk, [])
        if keyset_id is None:  # stored before keysets: every sample is a row
            out.extend(own)
        else:
            written: dict[tuple[str, str], list[tuple]] = {}
            for row in own:
                written.setdefault((row[1], row[2]), []).append(row)
            agents_at = collected or received
            for key in members.get(keyset_id, []):
                if key in written:
                    out.extend(written[key])
                    last = written[key][-1]
                    state[key] = (last[3], last[4], last[5], last[6])
                    continue
                now = state.get(key) or _entering(conn, code, key, mark, tails)
                if now is None:  # its rows are gone (pruned): nothing seen to replay
                    continue
                state[key] = now
                # the collector's own results are observed when received (collector/ingest/derive.py), not
                # by the agent's clock, which is what clock_skew and policy_mismatch are about
                at = received if key[0] in COLLECTOR_CHECK_IDS else agents_at
                out.append((pk, key[0], key[1], *now, at, received))
        if limit is not None and len(out) >= limit:
            return out[:limit]
    return out


def _entering(conn, code: str, key: tuple[str, str], mark: int, tails: dict) -> tuple | None:
    """A key's state at the watermark: its tail if no row was written since, else its last row at or before."""
    tail = tails.get(key)
    if tail is not None and tail[0] <= mark:
        return tail[1:]
    found = conn.execute(select(_R.status, _R.value, _R.message, _R.details).where(
        _R.point_code == code, _R.check == key[0], _R.target == key[1], _R.report_pk <= mark)
        .order_by(_R.report_pk.desc(), _R.id.desc()).limit(1)).first()
    return None if found is None else tuple(found)


def _tails(conn, codes: list[str]) -> dict[str, dict[tuple[str, str], tuple]]:
    out: dict[str, dict] = {}
    # Most tails' details are one of a few texts ({} , a loss ratio of 0, ...): each is decoded once per read
    # (decoding every tail was half of reading them, on every pass). The dicts are shared: nothing that
    # judges a sample changes its details.
    decoded: dict[str, dict] = {}
    t = ResultTail
    for code, check, target, pk, status, value, message, details in conn.execute(
            select(t.point_code, t.check, t.target, t.report_pk, t.status, t.value, t.message, t.details)
            .where(t.point_code.in_(codes))):
        parsed = decoded.get(details)
        if parsed is None:
            try:
                parsed = json.loads(details) if details else {}
            except ValueError:
                parsed = {}
            decoded[details] = parsed
        out.setdefault(code, {})[(check, target)] = (pk, status, value, message, parsed)
    return out
