"""Agent releases in the store (table in releasemodels.py) and their files beside it.

A release's file is kept as ``<data_dir>/releases/<sha256>``: copied there under a temporary name while it is
hashed, fsynced, then renamed into place, so a reader never sees half a file and the name is the digest of
what is in it. A row is only written (with its audit entry, in one transaction) once the caller has checked
the manifest against the copy; a refused release leaves neither a row nor a file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select, update

from collector.store import StoreError, utcnow
from collector.store import models as m
from collector.store.audit import Actor, append
from collector.store.regionscope import scoped
from collector.store.releasemodels import AgentRelease

RELEASES_DIR = "releases"
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StagedFile:
    path: Path
    size: int
    sha256: str


def releases_dir(data_dir) -> Path:
    return Path(data_dir) / RELEASES_DIR


def file_path(data_dir, sha256: str) -> Path:
    return releases_dir(data_dir) / sha256


def stage_file(data_dir, source) -> StagedFile:
    """Copy ``source`` into the releases directory under a temporary name, hashing what is written."""
    folder = releases_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".incoming-", dir=folder)
    h, size = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            while chunk := src.read(CHUNK):
                out.write(chunk)
                h.update(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return StagedFile(Path(tmp), size, h.hexdigest())


def keep(data_dir, staged: StagedFile) -> Path:
    target = file_path(data_dir, staged.sha256)
    os.replace(staged.path, target)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return target


def discard(staged: StagedFile) -> None:
    try:
        os.unlink(staged.path)
    except FileNotFoundError:
        pass


def release_json(r: AgentRelease) -> dict:
    return {"version": r.version, "platform": r.platform, "file": r.file_name, "size": r.size, "sha256": r.sha256,
            "added_at": r.added_at, "paused_at": r.paused_at, "paused_reason": r.paused_reason}


def add(store, version: str, platform: str, file_name: str, size: int, sha256: str, manifest: bytes,
        actor: Actor, replace: bool = False) -> str:
    """Store a release row (and audit it); "added", "replaced" or "unchanged" (the same file again).
    Raises StoreError("release_exists") for another file under a (version, platform) already held."""
    with store.write_session() as s:
        row = s.get(AgentRelease, (version, platform))
        if row is not None and row.sha256 == sha256 and row.manifest == manifest:
            return "unchanged"
        if row is not None and not replace:
            raise StoreError("release_exists", f"release {version} {platform} is already held with sha256 "
                                               f"{row.sha256}")
        outcome = "added" if row is None else "replaced"
        if row is None:
            row = AgentRelease(version=version, platform=platform)
            s.add(row)
        before = row.sha256
        row.file_name, row.size, row.sha256, row.manifest, row.added_at = file_name, size, sha256, manifest, utcnow()
        append(s, actor, f"agent_release.{'add' if outcome == 'added' else 'replace'}", f"{version}/{platform}",
               {"file": file_name, "size": size, "sha256": sha256, **({"was": before} if before else {})})
    return outcome


def get(store, version: str, platform: str) -> AgentRelease | None:
    with store.session() as s:
        return s.get(AgentRelease, (version, platform))


def get_any(store, version: str) -> AgentRelease | None:
    """Some platform's row of a version (None: the collector holds no release of it)."""
    with store.session() as s:
        return s.scalars(select(AgentRelease).where(AgentRelease.version == version).limit(1)).first()


def list_releases(store) -> list[dict]:
    with store.session() as s:
        rows = s.scalars(select(AgentRelease).order_by(AgentRelease.version, AgentRelease.platform)).all()
        return [release_json(r) for r in rows]


def pause(store, version: str, reason: str, actor: Actor, details: dict | None = None,
          alert: dict | None = None) -> bool:
    """Pause every platform of a version; False when none was running (unknown, or already paused), and then
    nothing is written. ``alert``: fields of an alerts row raised in the same transaction."""
    now = utcnow()
    with store.write_session() as s:
        done = s.execute(update(AgentRelease).where(AgentRelease.version == version, AgentRelease.paused_at.is_(None))
                         .values(paused_at=now, paused_reason=reason)).rowcount
        if not done:
            return False
        append(s, actor, "agent_release.pause", version, {"reason": reason, **(details or {})},
               (alert or {}).get("region_path", "/"))
        if alert is not None:
            s.add(m.Alert(**alert, pending_since=now, fired_at=now, observed_at=now, updated_at=now))
    return True


def resume(store, version: str, actor: Actor, details: dict | None = None) -> bool:
    """Lift a version's pause and resolve the alerts that said it was paused; False when it was not paused."""
    now = utcnow()
    with store.write_session() as s:
        done = s.execute(update(AgentRelease).where(AgentRelease.version == version,
                                                    AgentRelease.paused_at.is_not(None))
                         .values(paused_at=None, paused_reason=None)).rowcount
        if not done:
            return False
        for alert in s.scalars(select(m.Alert).where(m.Alert.rule == "rollout_paused", m.Alert.target == version,
                                                     m.Alert.state != "resolved")):
            alert.state, alert.resolved_at, alert.open_key, alert.updated_at = "resolved", now, None, now
        append(s, actor, "agent_release.resume", version, details or {})
    return True


def failed_at_resume(store, version: str) -> set[str]:
    """The points recorded as failed by the latest resume of ``version`` (none: never resumed)."""
    with store.session() as s:
        details = s.scalar(select(m.AuditEntry.details).where(
            m.AuditEntry.action == "agent_release.resume", m.AuditEntry.target == version)
            .order_by(m.AuditEntry.id.desc()).limit(1))
    found = (details or {}).get("failed_points") if isinstance(details, dict) else None
    return {c for c in found if isinstance(c, str)} if isinstance(found, list) else set()


def paused_versions(store) -> set[str]:
    with store.session() as s:
        return set(s.scalars(select(AgentRelease.version).where(AgentRelease.paused_at.is_not(None))))


def running_versions(store, scope: str = "/") -> list[tuple[str, str, str | None]]:
    """(point code, region path, agent version of its latest report) of every point in scope."""
    with store.session() as s:
        stmt = (select(m.Point.code, m.Point.region_path, m.PointState.agent_version)
                .join(m.PointState, m.PointState.point_code == m.Point.code, isouter=True))
        return [tuple(r) for r in s.execute(scoped(stmt, m.Point.region_path, scope))]


def version_counts(store, scope: str = "/") -> list[tuple[str, int]]:
    """(agent version, points whose latest report came from it) in scope, by version."""
    with store.session() as s:
        stmt = (select(m.PointState.agent_version, func.count()).join(m.Point, m.Point.code == m.PointState.point_code)
                .where(m.PointState.agent_version.is_not(None)))
        stmt = scoped(stmt, m.Point.region_path, scope).group_by(m.PointState.agent_version)
        return sorted((v, n) for v, n in s.execute(stmt))


def latest_results_of(store, check: str, status: str, codes: list[str] | None = None) -> list[tuple[str, dict, datetime]]:
    """(point code, details, received at) of the points' latest result of ``check`` when it has ``status``."""
    with store.session() as s:
        stmt = select(m.LatestResult.point_code, m.LatestResult.details, m.LatestResult.received_at).where(
            m.LatestResult.check == check, m.LatestResult.status == status)
        if codes is not None:
            stmt = stmt.where(m.LatestResult.point_code.in_(codes))
        return [(c, d or {}, at) for c, d, at in s.execute(stmt)]
