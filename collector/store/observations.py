"""Results as the scoring engine reads them: (receive time, check, target, status, policy verdict) tuples,
streamed in time order (collector/scoring/scores.py makes them Observations). The policy verdict is the status
of the ``agent.policy`` result of the report the result came in (None: that report had none), so scoring can
count only what was checked against an issued policy."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

from sqlalchemy import and_, select
from sqlalchemy.orm import aliased

from agent.vocabulary import AGENT_POLICY
from collector.store import models as m
from collector.store.regionscope import scoped


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def observations(store, code: str, since: datetime, until: datetime) -> Iterator[tuple]:
    """A point's results received in [since, until), oldest first."""
    verdict = aliased(m.Result)
    with store.session() as s:
        rows = s.execute(select(m.Result.received_at, m.Result.check, m.Result.target, m.Result.status,
                                verdict.status)
                         .outerjoin(verdict, and_(verdict.report_pk == m.Result.report_pk,
                                                  verdict.check == AGENT_POLICY))
                         .where(m.Result.point_code == code, m.Result.received_at >= since,
                                m.Result.received_at < until)
                         .order_by(m.Result.received_at, m.Result.id)
                         .execution_options(yield_per=10000))
        for at, check, target, status, policy in rows:
            yield _aware(at), check, target, status, policy


def latest_observations(store, scope: str = "/", codes: list[str] | None = None) -> dict[str, list[tuple]]:
    """Every point's latest results beneath a scope (or of these points), for "now"."""
    verdict = aliased(m.Result)
    stmt = (select(m.LatestResult.point_code, m.LatestResult.received_at, m.LatestResult.check,
                   m.LatestResult.target, m.LatestResult.status, verdict.status)
            .join(m.Point, m.Point.code == m.LatestResult.point_code)
            .outerjoin(m.Report, m.Report.report_id == m.LatestResult.report_id)
            .outerjoin(verdict, and_(verdict.report_pk == m.Report.id, verdict.check == AGENT_POLICY)))
    if codes is not None:
        stmt = stmt.where(m.LatestResult.point_code.in_(codes))
    stmt = scoped(stmt, m.Point.region_path, scope)
    out: dict[str, list] = {}
    with store.session() as s:
        for code, at, check, target, status, policy in s.execute(stmt):
            out.setdefault(code, []).append((_aware(at), check, target, status, policy))
    return out
