"""Every sample of a point's history, rebuilt from what ingest stored (issue 21): the one place that does it.

A results row is written only when a key (check, target) says something new (collector/ingest/changes.py);
a report names the keys it carried (``reports.keyset_id`` -> ``keyset_members``). So the samples of a report
are its keyset's members, each with what the key's latest results row at or before the report says. A report
stored before migration 0011 has no keyset: its own results rows are its samples, as they always were.

Reports are walked in receive order (received_at, then id: the order the history readers always yielded),
and the results rows of the window beside them in the same order, so a key's state is its latest row so
far. Receive order is storage order: ingest never stamps a report before its point's last one
(collector/store/ingest.py), so the row a report's key was compared with when it was stored is the row read
here. A key written twice in one report is a sample per row. A key's state before the window is looked up once, the first time a report of the
window carries it without a row of its own. A member with no row at or before its report (pruned) is not a
sample: nothing was seen that can be shown. Only ``trusted`` rows count (trust.py), and the policy
verdict of a report is ``reports.verdict`` (for a report before 0011: its own agent.policy row's status).

Both statements are streamed on one connection; memory holds one report and one state row per key.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from datetime import datetime

from sqlalchemy import Float, cast, extract, func, select

from agent.vocabulary import AGENT_POLICY
from collector.store import models as m
from collector.store.historymodels import Keyset, KeysetMember
from collector.store.trust import trusted

_R = m.Result.__table__
_REP = m.Report.__table__
_KS = Keyset.__table__
_KM = KeysetMember.__table__


def epoch_of(store, col):
    """POSIX seconds of a timestamp column, computed by the database (no datetime object per row)."""
    return (func.julianday(col) - 2440587.5) * 86400.0 if store.is_sqlite else cast(extract("epoch", col), Float)


def keysets(conn, code: str, checks: Iterable[str] | None = None) -> dict[int, tuple[tuple[str, str], ...]]:
    """The point's keysets: id -> its members (check, target), sorted (only those of ``checks`` if given)."""
    stmt = (select(_KM.c.keyset_id, _KM.c.check, _KM.c.target).join(_KS, _KS.c.id == _KM.c.keyset_id)
            .where(_KS.c.point_code == code).order_by(_KM.c.keyset_id, _KM.c.check, _KM.c.target))
    wanted = None if checks is None else set(checks)
    out: dict[int, list] = {}
    for ks, check, target in conn.execute(stmt):
        members = out.setdefault(ks, [])
        if wanted is None or check in wanted:
            members.append((check, target))
    return {ks: tuple(members) for ks, members in out.items()}


def by_report(store, code: str, since: datetime, until: datetime, columns: tuple[str, ...] = ("status",),
              checks: tuple[str, ...] | None = None, epoch: bool = False, target: str | None = None,
              report_columns: tuple[str, ...] = (), batch: int = 5000, conn=None) -> Iterator[tuple]:
    """(received_at, report id, policy verdict, (report_columns values…), [(check, target, (column values…)),
    …]) for every report of a point received in [since, until), in receive order; ``columns``: results
    columns to read per sample, ``checks``/``target``: only these keys; ``epoch``: received_at as POSIX
    seconds; ``conn``: read on this connection (a caller's transaction) instead of one of its own."""
    cols = [_R.c[c] for c in columns]
    rep_at = epoch_of(store, _REP.c.received_at) if epoch else _REP.c.received_at
    row_at = epoch_of(store, _R.c.received_at) if epoch else _R.c.received_at
    rep_stmt = (select(rep_at, _REP.c.id, _REP.c.keyset_id, _REP.c.verdict, *(_REP.c[c] for c in report_columns))
                .where(_REP.c.point_code == code, _REP.c.received_at >= since, _REP.c.received_at < until)
                .order_by(_REP.c.received_at, _REP.c.id))
    where = [_R.c.point_code == code, _R.c.received_at >= since, _R.c.received_at < until, trusted(_R.c)]
    if checks is not None:  # a legacy report's verdict is its own agent.policy row: read it too
        where.append(_R.c.check.in_(sorted({*checks, AGENT_POLICY})))
    row_stmt = (select(row_at, _R.c.report_pk, _R.c.check, _R.c.target, _R.c.status, *cols).where(*where)
                .order_by(_R.c.received_at, _R.c.report_pk, _R.c.id))
    wanted = None if checks is None else frozenset(checks)

    def keep(check, tgt):
        return (wanted is None or check in wanted) and (target is None or tgt == target)

    with nullcontext(conn) if conn is not None else store.engine.connect() as conn:
        members = keysets(conn, code, checks)
        if target is not None:
            members = {ks: tuple(k for k in keys if k[1] == target) for ks, keys in members.items()}
        state: dict[tuple[str, str], tuple] = {}
        looked_up: set[tuple[str, str]] = set()
        rows = conn.execute(row_stmt.execution_options(yield_per=batch))  # per statement: conn may be a caller's
        reps = conn.execute(rep_stmt.execution_options(yield_per=batch))
        row = next(rows, None)
        for at, pk, keyset_id, verdict, *extra in reps:
            own = []
            while row is not None and (row[0], row[1]) < (at, pk):  # a row of no report in the window
                state[(row[2], row[3])] = tuple(row[5:])
                row = next(rows, None)
            while row is not None and row[1] == pk:
                own.append(row)
                state[(row[2], row[3])] = tuple(row[5:])
                row = next(rows, None)
            if keyset_id is None:  # stored before 0011: its rows are its samples
                verdict = next((r[4] for r in own if r[2] == AGENT_POLICY), None)
                yield at, pk, verdict, extra, [(r[2], r[3], tuple(r[5:])) for r in own if keep(r[2], r[3])]
                continue
            written: dict[tuple[str, str], list[tuple]] = {}
            for r in own:  # a key twice in the report has a row per sample: each is one
                written.setdefault((r[2], r[3]), []).append(tuple(r[5:]))
            out = []
            for key in members.get(keyset_id, ()):
                if key in written:
                    out.extend((key[0], key[1], values) for values in written[key])
                    continue
                cur = state.get(key)
                if cur is None and key not in looked_up:
                    looked_up.add(key)
                    cur = _before(conn, code, key, since, cols)
                    if cur is not None:
                        state[key] = cur
                if cur is not None:
                    out.append((key[0], key[1], cur))
            yield at, pk, verdict, extra, out


def checks_of(store, code: str) -> list[str]:
    """Every check id the point has results rows or keyset members of, sorted (an index seek per check)."""
    with store.engine.connect() as conn:
        found = {c for keys in keysets(conn, code).values() for c, _ in keys}
        last = None
        while True:
            stmt = select(func.min(_R.c.check)).where(_R.c.point_code == code)
            nxt = conn.execute(stmt if last is None else stmt.where(_R.c.check > last)).scalar()
            if nxt is None:
                return sorted(found)
            found.add(nxt)
            last = nxt


def _before(conn, code: str, key: tuple[str, str], since: datetime, cols) -> tuple | None:
    """What a key's latest trusted row before ``since`` says (None: no row, or it was pruned)."""
    got = conn.execute(select(*cols).where(_R.c.point_code == code, _R.c.check == key[0], _R.c.target == key[1],
                                           _R.c.received_at < since, trusted(_R.c))
                       .order_by(_R.c.received_at.desc(), _R.c.id.desc()).limit(1)).first()
    return None if got is None else tuple(got)
