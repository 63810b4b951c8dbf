"""Results as the scoring engine reads them: (receive time, check, target, status, policy verdict) tuples,
one per sample (a key a report carried), streamed in time order (collector/scoring/scores.py makes them Observations). The policy verdict is the status
of the ``agent.policy`` result of the report the result came in (None: that report had none), so scoring can
count only what was checked against an issued policy.

Only the collector's own rows of its check ids (COLLECTOR_CHECK_IDS: the verdict rows collector/ingest/derive.py
writes, marked ``details.source = "collector"``) are read as the report's verdict or as the collector's
observations; ingest refuses those check ids from an agent, and a row that got in some other way (stored before
that refusal, say) is ignored rather than trusted."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import aliased

from agent.vocabulary import AGENT_POLICY, COLLECTOR_CHECK_IDS
from collector.store import models as m
from collector.store.regionscope import scoped


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


COLLECTOR_SOURCE = "collector"  # details.source of every row collector/ingest/derive.py writes


def collectors_own(table):
    """A row of ``table`` (results, latest_results or an alias) the collector wrote itself."""
    return table.details["source"].as_string() == COLLECTOR_SOURCE


def report_verdict(verdict, report_pk):
    """The join condition of a report's agent.policy verdict: the collector's row of that report, never another."""
    return and_(verdict.report_pk == report_pk, verdict.check == AGENT_POLICY, collectors_own(verdict))


def trusted(table):
    """A row that is either an agent's result or, for the collector's check ids, the collector's own."""
    return or_(table.check.not_in(sorted(COLLECTOR_CHECK_IDS)), collectors_own(table))


def observations(store, code: str, since: datetime, until: datetime) -> Iterator[tuple]:
    """A point's samples received in [since, until), oldest first (collector/store/samples.py rebuilds them
    from the reports' keysets and the rows of what changed); within a report, in (check, target) order."""
    from collector.store.samples import by_report

    for at, _pk, policy, _, keys in by_report(store, code, since, until):
        at = _aware(at)
        for check, target, (status,) in keys:
            yield at, check, target, status, policy


def latest_observations(store, scope: str = "/", codes: list[str] | None = None) -> dict[str, list[tuple]]:
    """Every point's latest results beneath a scope (or of these points), for "now"."""
    verdict = aliased(m.Result)
    stmt = (select(m.LatestResult.point_code, m.LatestResult.received_at, m.LatestResult.check,
                   m.LatestResult.target, m.LatestResult.status, verdict.status)
            .join(m.Point, m.Point.code == m.LatestResult.point_code)
            .outerjoin(m.Report, m.Report.report_id == m.LatestResult.report_id)
            .outerjoin(verdict, report_verdict(verdict, m.Report.id))
            .where(trusted(m.LatestResult)))
    if codes is not None:
        stmt = stmt.where(m.LatestResult.point_code.in_(codes))
    stmt = scoped(stmt, m.Point.region_path, scope)
    out: dict[str, list] = {}
    with store.engine.connect() as conn:  # Core: plain rows, read by the score keeper on every pass
        for code, at, check, target, status, policy in conn.execute(stmt):
            out.setdefault(code, []).append((_aware(at), check, target, status, policy))
    return out
