"""Store side of the point registry: all-or-nothing import and the export read, both audited."""

from __future__ import annotations

from sqlalchemy import select

from collector.registry.regions import is_within
from collector.store import StoreError, utcnow
from collector.store import models as m
from collector.store.audit import Actor, append
from collector.store.points import ensure_region


def import_points(store, points, actor: Actor, source_name: str = "", scope: str = "/") -> dict:
    """Create or update the given PointRows in one transaction; returns counts. Rows were validated and lie
    within ``scope`` (collector/registry/importing.py); an existing point outside it is refused with
    StoreError ``code_outside_scope`` (its message is the code) and nothing is written."""
    created = updated = 0
    with store.write_session() as s:
        existing = {p.code: p for p in s.scalars(select(m.Point).where(m.Point.code.in_([p.code for p in points])))}
        for region in sorted({p.region for p in points}):
            ensure_region(s, region)
        now = utcnow()
        for p in points:
            row = existing.get(p.code)
            if row is None:
                s.add(m.Point(code=p.code, name=p.name, region_path=p.region, profile=p.profile, address=p.address,
                              expected_devices=p.expected_devices, report_interval_s=p.report_interval_s,
                              devices=p.devices, simulated=False, created_at=now))
                s.add(m.PointState(point_code=p.code, last_digest="", seq_gaps=0, reports_total=0,
                                   fingerprint_mismatch=False))
                created += 1
            else:
                if not is_within(row.region_path, scope):
                    raise StoreError("code_outside_scope", p.code)
                row.name, row.region_path, row.profile, row.address = p.name, p.region, p.profile, p.address
                row.expected_devices, row.report_interval_s = p.expected_devices, p.report_interval_s
                row.devices = p.devices
                updated += 1
        append(s, actor, "points.import", source_name or None,
               {"rows": len(points), "created": created, "updated": updated}, scope)
    return {"rows": len(points), "created": created, "updated": updated}


def export_points(store, scope: str = "/", actor: Actor | None = None, target: str | None = None) -> list[dict]:
    from collector.store.queries import _scope_filter

    with store.write_session() as s:
        rows = s.scalars(_scope_filter(select(m.Point), scope).order_by(m.Point.code)).all()
        out = [{"code": p.code, "name": p.name, "region": p.region_path, "profile": p.profile, "address": p.address,
                "expected_devices": p.expected_devices or [], "report_interval_s": p.report_interval_s,
                "devices": p.devices or []}
               for p in rows]
        if actor is not None:
            append(s, actor, "points.export", target, {"points": len(out)}, scope)
    return out
