"""The point_scores table: reads for /metrics, writes by the score keeper."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import or_, select

from collector.store import dialect_insert
from collector.store import models as m
from collector.store.regionscope import scoped


def save_scores(store, rows: list[dict]) -> None:
    """Replace the scores of these points (dicts with point_code, profile, earned, automatic_points, items,
    scored_at), unless the stored one was scored later.

    An upsert, not delete-then-insert: collectors sharing a database score the same points at the same
    moment (at start-up every never-scored point is due on each, and on each minute's tick every point gone
    silent), and the second of two deletes finds the row the first one replaced already gone, so its
    insert then collides with the first one's row and the whole batch's scores are lost."""
    if not rows:
        return
    table = m.PointScore.__table__
    with store.write_connection() as conn:  # Core, as save_metric_lines
        ins = dialect_insert(conn.dialect.name)(table)
        conn.execute(ins.on_conflict_do_update(
            index_elements=["point_code"],
            set_={c: ins.excluded[c] for c in ("profile", "earned", "automatic_points", "items", "scored_at")},
            where=table.c.scored_at <= ins.excluded.scored_at), rows)


def metrics_compliance(store, scope: str = "/"):
    """(point_code, profile, earned, [(item_id, ok)]) beneath a scope, for pointwatch_compliance_*."""
    stmt = (select(m.PointScore.point_code, m.PointScore.profile, m.PointScore.earned, m.PointScore.items)
            .join(m.Point, m.Point.code == m.PointScore.point_code))
    stmt = scoped(stmt, m.Point.region_path, scope)
    with store.session() as s:
        rows = s.execute(stmt.order_by(m.PointScore.point_code)).all()
    return [(code, profile, earned, sorted((items or {}).items())) for code, profile, earned, items in rows]


def points_needing_scores(store, now: datetime | None = None) -> list[str]:
    """Points never scored, or gone silent since their last score (silence takes their points away)."""
    now = now or datetime.now(timezone.utc)
    with store.session() as s:
        return list(s.scalars(
            select(m.Point.code)
            .outerjoin(m.PointScore, m.PointScore.point_code == m.Point.code)
            .outerjoin(m.PointState, m.PointState.point_code == m.Point.code)
            .where(or_(m.PointScore.point_code.is_(None),
                       (m.PointState.silent_after < now) & (m.PointScore.scored_at < m.PointState.silent_after)))
            .order_by(m.Point.code)))


def score_inputs(store, codes: list[str]) -> dict[str, tuple[str, int, str]]:
    """code -> (profile, report interval, region) of these points."""
    with store.engine.connect() as conn:  # Core, as the keeper's other reads
        return {c: (p, i, r) for c, p, i, r in conn.execute(
            select(m.Point.code, m.Point.profile, m.Point.report_interval_s, m.Point.region_path)
            .where(m.Point.code.in_(codes)))}
