"""Storing reports: idempotent on report_id, hash-chained per point, latest state kept apart from history."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import timezone

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from agent.wire import Report, _jsonable
from collector.store import models as m

GENESIS = ""  # prev_digest of a point's first report


def canonical_json(report: Report) -> str:
    return json.dumps(_jsonable(asdict(report)), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def chain_digest(prev_digest: str, body: str) -> str:
    from collector.store import sha256_hex

    return sha256_hex(prev_digest + "\n" + body)


def ingest_reports(self, reports: list[Report], received_at=None) -> tuple[int, int]:
    """Store reports in one transaction; returns (accepted, duplicates). Callers have checked ownership."""
    from collector.store import utcnow

    received_at = received_at or utcnow()
    accepted = duplicates = 0
    by_point: dict[str, list[Report]] = {}
    for r in reports:
        by_point.setdefault(r.point_code, []).append(r)
    with self.session() as s:
        for point_code in sorted(by_point):  # fixed lock order: two batches never deadlock
            # The point_state row serialises writers of one point (FOR UPDATE on PostgreSQL; SQLite has one
            # writer anyway), so the hash chain and the duplicate check see every committed report.
            state = s.get(m.PointState, point_code, with_for_update=True)
            if state is None:
                state = m.PointState(point_code=point_code, last_digest="", seq_gaps=0, reports_total=0)
                s.add(state)
                s.flush()
            batch = by_point[point_code]
            ids = [r.report_id for r in batch]
            seen = set(s.scalars(select(m.Report.report_id).where(m.Report.report_id.in_(ids))))
            latest = {(row.check, row.target): row for row in
                      s.scalars(select(m.LatestResult).where(m.LatestResult.point_code == point_code))}
            for report in batch:
                if report.report_id in seen:
                    duplicates += 1
                    continue
                seen.add(report.report_id)
                try:
                    with s.begin_nested():
                        _store_one(s, state, latest, report, received_at)
                    accepted += 1
                except IntegrityError:
                    # Another collector stored the same report_id between our check and insert.
                    duplicates += 1
    return accepted, duplicates


def _store_one(s, state: m.PointState, latest: dict, report: Report, received_at) -> None:
    body = canonical_json(report)
    digest = chain_digest(state.last_digest or GENESIS, body)
    row = m.Report(
        report_id=report.report_id, point_code=report.point_code, agent_id=report.agent_id, seq=report.seq,
        collected_at=report.collected_at, sent_at=report.sent_at, received_at=received_at,
        agent_version=report.agent_version, host=_jsonable(asdict(report.host)), body=body,
        prev_digest=state.last_digest or GENESIS, digest=digest,
    )
    s.add(row)
    s.flush()
    s.add_all([
        m.Result(report_pk=row.id, point_code=report.point_code, check=r.check, target=r.target, status=r.status,
                 value=r.value, unit=r.unit, message=r.message, details=_jsonable(r.details),
                 observed_at=r.observed_at or report.collected_at, received_at=received_at)
        for r in report.results
    ])
    state.last_digest = digest
    state.reports_total = (state.reports_total or 0) + 1
    # A backlog report (older than what we already have) extends history but must not roll back "now".
    newer = state.last_collected_at is None or report.collected_at >= _aware(state.last_collected_at)
    state.last_received_at = received_at
    if newer:
        state.last_collected_at = report.collected_at
        state.last_seq = report.seq
        state.agent_id, state.agent_version = report.agent_id, report.agent_version
        state.hostname, state.os = report.host.hostname, report.host.os
        state.clock_skew_s = round((report.sent_at - received_at).total_seconds(), 3)
    for r in report.results:
        observed = r.observed_at or report.collected_at
        key = (r.check, r.target)
        cur = latest.get(key)
        if cur is not None and _aware(cur.observed_at) > observed:
            continue
        if cur is None:
            cur = m.LatestResult(point_code=report.point_code, check=r.check, target=r.target, since=observed)
            s.add(cur)
            latest[key] = cur
        elif cur.status != r.status:
            cur.since = observed
        cur.status, cur.value, cur.unit, cur.message = r.status, r.value, r.unit, r.message
        cur.details, cur.observed_at, cur.received_at = _jsonable(r.details), observed, received_at
        cur.report_id = report.report_id


def _aware(ts):
    if ts is None:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
