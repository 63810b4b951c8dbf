"""Results as the scoring engine reads them: (receive time, check, target, status, policy verdict) tuples,
one per sample (a key a report carried), streamed in time order (collector/scoring/scores.py makes them Observations). The policy verdict is the status
of the ``agent.policy`` result of the report the result came in (None: that report had none), so scoring can
count only what was checked against an issued policy.

Only trusted rows are read (collector/store/trust.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

from sqlalchemy import select

from collector.store import models as m
from collector.store.regionscope import scoped
from collector.store.trust import trusted


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def observations(store, code: str, since: datetime, until: datetime) -> Iterator[tuple]:
    """A point's samples received in [since, until), oldest first (collector/store/samples.py rebuilds them
    from the reports' keysets and the rows of what changed); within a report, in (check, target) order."""
    from collector.store.samples import by_report

    for at, _pk, policy, _, keys in by_report(store, code, since, until):
        at = _aware(at)
        for check, target, (status,) in keys:
            yield at, check, target, status, policy


def latest_observations(store, scope: str = "/", codes: list[str] | None = None) -> dict[str, list[tuple]]:
    """Every point's latest results beneath a scope (or of these points), for "now". The policy verdict is
    that of the report the latest state came in (``reports.verdict``: the verdict's own results row is
    written only when it changes)."""
    stmt = (select(m.LatestResult.point_code, m.LatestResult.received_at, m.LatestResult.check,
                   m.LatestResult.target, m.LatestResult.status, m.Report.verdict)
            .join(m.Point, m.Point.code == m.LatestResult.point_code)
            .outerjoin(m.Report, m.Report.report_id == m.LatestResult.report_id)
            .where(trusted(m.LatestResult)))
    if codes is not None:
        stmt = stmt.where(m.LatestResult.point_code.in_(codes))
    stmt = scoped(stmt, m.Point.region_path, scope)
    out: dict[str, list] = {}
    with store.engine.connect() as conn:  # Core: plain rows, read by the score keeper on every pass
        for code, at, check, target, status, policy in conn.execute(stmt):
            out.setdefault(code, []).append((_aware(at), check, target, status, policy))
    return out
