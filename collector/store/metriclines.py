"""Reads and writes for /metrics: the live per-point facts, the latest rows a point's lines are made of,
and the pre-rendered lines themselves (table metric_lines)."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import String, case, delete, select, type_coerce

from agent.vocabulary import SILENCE_INTERVALS_DEFAULT
from collector.store import dialect_insert
from collector.store import models as m
from collector.store.regionscope import scoped
from collector.store.trust import trusted


def _scoped(stmt, column, scope: str):
    return scoped(stmt, column, scope)


def metrics_points(store, scope: str = "/", now=None,
                   silence_intervals: int = SILENCE_INTERVALS_DEFAULT) -> list[tuple]:
    """(code, region, profile, up, last_received_ts, clock_skew_s, fingerprint_mismatch, reported) of every
    point beneath a scope, by code; up while the last report is younger than ``silence_intervals``
    report intervals."""
    from collector.store import utcnow
    from collector.store.queries import _aware

    now_ts = (now or utcnow()).timestamp()
    out = []
    with store.engine.connect() as conn:
        for code, region, profile, interval, last, skew, mismatch, agent_id in conn.execute(_scoped(
                select(m.Point.code, m.Point.region_path, m.Point.profile, m.Point.report_interval_s,
                       m.PointState.last_received_at, m.PointState.clock_skew_s,
                       m.PointState.fingerprint_mismatch, m.PointState.agent_id)
                .outerjoin(m.PointState, m.PointState.point_code == m.Point.code), m.Point.region_path, scope)
                .order_by(m.Point.code)):
            last_ts = _aware(last).timestamp() if last is not None else None
            up = last_ts is not None and now_ts - last_ts <= silence_intervals * interval
            out.append((code, region, profile, up, last_ts, skew, bool(mismatch), agent_id is not None))
    return out


def _line_columns(lr) -> tuple:
    # The database picks out the few details that become series (``loss_ratio`` of core ICMP, ``supplies``
    # of devices), so no row's whole JSON is decoded in Python.
    return (lr.point_code, lr.check, lr.target, lr.status, lr.value,
            case((lr.check == "net.core.icmp", lr.details["loss_ratio"].as_float()), else_=None),
            type_coerce(case((lr.check.like("device.%"), lr.details["supplies"]), else_=None), String),
            lr.received_at)


def _line_row(r) -> tuple:
    from collector.store.queries import _json

    return tuple(r[:8]) if r[6] is None else (*r[:6], _json(r[6]), r[7])


def metric_rows(store, scope: str = "/", codes: list[str] | None = None) -> list[tuple]:
    """(code, check, target, status, value, loss_ratio, supplies, received_at) of the latest results beneath a
    scope or of these points."""
    lr = m.LatestResult
    stmt = select(*_line_columns(lr))
    if codes is not None:
        stmt = stmt.where(lr.point_code.in_(codes))
    if scope != "/":
        stmt = _scoped(stmt.join(m.Point, m.Point.code == lr.point_code), m.Point.region_path, scope)
    with store.engine.connect() as conn:
        return [_line_row(r) for r in conn.execute(stmt).all()]


def lines_and_evidence(store, codes: list[str]) -> tuple[list[tuple], dict[str, list[tuple]]]:
    """For the score keeper's pass, from one read of these points' latest results: their metric_rows, and
    {code: [(received_at, check, target, status, policy verdict)]} of the trusted ones
    (observations.latest_observations' rows). Read apart, the two were two thirds of the pass."""
    from collector.store.queries import _aware

    lr = m.LatestResult
    stmt = (select(*_line_columns(lr), case((trusted(lr), True), else_=False), m.Report.verdict)
            .outerjoin(m.Report, m.Report.report_id == lr.report_id).where(lr.point_code.in_(codes)))
    lines, evidence = [], {}
    with store.engine.connect() as conn:
        for r in conn.execute(stmt).all():
            lines.append(_line_row(r))
            if r[8]:
                evidence.setdefault(r[0], []).append((_aware(r[7]), r[1], r[2], r[3], r[9]))
    return lines, evidence


def save_metric_lines(store, lines: dict[str, tuple[str, dict[str, str]]]) -> None:
    """Replace the stored lines of these points: code -> (region, {family: body}).

    Upserted, then the families a point no longer has deleted (not delete-then-insert: two collectors
    saving one point at once would collide on the second insert, see pointscores.save_scores)."""
    if not lines:
        return
    rows = [{"family": fam, "point_code": code, "region_path": region, "body": body}
            for code, (region, bodies) in lines.items() for fam, body in bodies.items()]
    by_families: dict[tuple[str, ...], list[str]] = {}  # most points have the same families: few deletes
    for code, (_region, bodies) in lines.items():
        by_families.setdefault(tuple(sorted(bodies)), []).append(code)
    table = m.MetricLines.__table__
    with store.write_connection() as conn:  # Core: the ORM's bulk path cost more than the database's work
        if rows:
            ins = dialect_insert(conn.dialect.name)(table)
            conn.execute(ins.on_conflict_do_update(
                index_elements=["family", "point_code"],
                set_={"region_path": ins.excluded.region_path, "body": ins.excluded.body}), rows)
        for families, codes in by_families.items():
            conn.execute(delete(table).where(table.c.point_code.in_(codes), table.c.family.not_in(families)))


def stream_metric_lines(store, family: str, scope: str = "/") -> Iterator[str]:
    """The stored lines of one family beneath a scope, by point code."""
    stmt = _scoped(select(m.MetricLines.body).where(m.MetricLines.family == family),
                   m.MetricLines.region_path, scope).order_by(m.MetricLines.point_code)
    with store.engine.connect() as conn:
        for (body,) in conn.execution_options(yield_per=2000).execute(stmt):
            yield body


def points_with_stale_lines(store) -> list[str]:
    """Points whose stored lines name a region they no longer belong to (a point moved)."""
    with store.session() as s:
        return list(s.scalars(select(m.MetricLines.point_code).join(m.Point, m.Point.code == m.MetricLines.point_code)
                              .where(m.MetricLines.region_path != m.Point.region_path).distinct()))
