"""Regions and points: the registry rows every other table hangs off."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from collector.registry.regions import ancestors, is_within, normalize_path, split_path
from collector.store import StoreError, utcnow
from collector.store import models as m
from collector.store.audit import SYSTEM, Actor, append


def ensure_region(session: Session, path: str) -> None:
    """Create the region and every region above it that is missing, inside the caller's transaction."""
    for level, prefix in enumerate(ancestors(path), start=1):
        if session.scalar(select(m.Region.id).where(m.Region.path == prefix)) is None:
            parent = "/".join(split_path(prefix)[:-1]) or None
            session.add(m.Region(path=prefix, name=split_path(prefix)[-1], parent_path=parent, level=level))
            session.flush()


def upsert_point(store, code: str, name: str, region_path: str, profile: str = "national-basic",
                 simulated: bool = False, report_interval_s: int = 60, address: str | None = None,
                 actor: Actor | None = None, created_at: datetime | None = None) -> None:
    """Register a point or change its registration; ``created_at`` (default now) is when it was registered,
    kept from its first registration on: scoring counts nothing before it."""
    region_path = normalize_path(region_path)
    with store.write_session() as s:
        append(s, actor or SYSTEM, "point.upsert", f"point:{code}", {"name": name, "profile": profile},
               region_path)
        ensure_region(s, region_path)
        point = s.scalar(select(m.Point).where(m.Point.code == code))
        if point is None:
            s.add(m.Point(code=code, name=name, region_path=region_path, profile=profile, simulated=simulated,
                          report_interval_s=report_interval_s, address=address,
                          created_at=created_at or utcnow()))
            s.add(m.PointState(point_code=code, last_digest="", seq_gaps=0, reports_total=0,
                               fingerprint_mismatch=False))
        else:
            point.name, point.region_path, point.profile = name, region_path, profile
            point.simulated, point.report_interval_s, point.address = simulated, report_interval_s, address


def point_region(store, code: str) -> str | None:
    with store.session() as s:
        return s.scalar(select(m.Point.region_path).where(m.Point.code == code))


def save_point(store, p, actor: Actor, scope: str = "/", create: bool = True) -> dict:
    """Register (``create``) or change one validated point (a PointRow: collector/registry/editing.py),
    audited as ``point.upsert`` with what was saved. Within ``scope`` only: a point elsewhere does not
    exist for the caller (``unknown_point``), and its code cannot be taken (``point_exists``, the same for
    a code in use anywhere: codes are unique across the store)."""
    with store.write_session() as s:
        point = s.scalar(select(m.Point).where(m.Point.code == p.code).with_for_update())
        if create and point is not None:
            raise StoreError("point_exists", p.code)
        if not create and (point is None or not is_within(point.region_path, scope)):
            raise StoreError("unknown_point", p.code)
        if not is_within(p.region, scope):
            raise StoreError("region_outside_scope", p.region)
        ensure_region(s, p.region)
        before = None
        if point is None:
            s.add(m.Point(code=p.code, name=p.name, region_path=p.region, profile=p.profile, address=p.address,
                          expected_devices=p.expected_devices, report_interval_s=p.report_interval_s,
                          simulated=False, created_at=utcnow()))
            s.add(m.PointState(point_code=p.code, last_digest="", seq_gaps=0, reports_total=0,
                               fingerprint_mismatch=False))
        else:
            before = point.region_path
            point.name, point.region_path, point.profile, point.address = p.name, p.region, p.profile, p.address
            point.expected_devices, point.report_interval_s = p.expected_devices, p.report_interval_s
        saved = {"name": p.name, "region": p.region, "profile": p.profile, "address": p.address,
                 "expected_devices": p.expected_devices, "report_interval_s": p.report_interval_s}
        append(s, actor, "point.upsert", f"point:{p.code}",
               {**saved, "created": point is None, **({"region_before": before} if before != p.region and before
                                                      else {})}, p.region)
    return {"code": p.code, **saved}


def point_record(store, code: str, scope: str = "/") -> dict | None:
    """A point's registration (what the edit form shows), or None outside ``scope``."""
    with store.session() as s:
        p = s.scalar(select(m.Point).where(m.Point.code == code))
        if p is None or not is_within(p.region_path, scope):
            return None
        return {"code": p.code, "name": p.name, "region": p.region_path, "profile": p.profile,
                "address": p.address, "expected_devices": p.expected_devices or [],
                "report_interval_s": p.report_interval_s, "simulated": p.simulated}
