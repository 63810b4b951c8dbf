"""Results as the scoring engine reads them: (receive time, check, target, status) tuples, streamed in time
order (collector/scoring/scores.py makes them Observations)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

from sqlalchemy import select

from collector.store import models as m
from collector.store.regionscope import scoped


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def observations(store, code: str, since: datetime, until: datetime) -> Iterator[tuple]:
    """A point's results received in [since, until), oldest first."""
    with store.session() as s:
        rows = s.execute(select(m.Result.received_at, m.Result.check, m.Result.target, m.Result.status)
                         .where(m.Result.point_code == code, m.Result.received_at >= since,
                                m.Result.received_at < until)
                         .order_by(m.Result.received_at, m.Result.id)
                         .execution_options(yield_per=10000))
        for at, check, target, status in rows:
            yield _aware(at), check, target, status


def latest_observations(store, scope: str = "/", codes: list[str] | None = None) -> dict[str, list[tuple]]:
    """Every point's latest results beneath a scope (or of these points), for "now"."""
    stmt = (select(m.LatestResult.point_code, m.LatestResult.received_at, m.LatestResult.check,
                   m.LatestResult.target, m.LatestResult.status)
            .join(m.Point, m.Point.code == m.LatestResult.point_code))
    if codes is not None:
        stmt = stmt.where(m.LatestResult.point_code.in_(codes))
    stmt = scoped(stmt, m.Point.region_path, scope)
    out: dict[str, list] = {}
    with store.session() as s:
        for code, at, check, target, status in s.execute(stmt):
            out.setdefault(code, []).append((_aware(at), check, target, status))
    return out
