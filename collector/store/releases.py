"""Agent releases in the store (tables in releasemodels.py), their files' bytes with them (releasefiles.py).

A release's file is first copied into ``<data_dir>/releases/`` under a temporary name while it is hashed, and
it is that copy (not the admin's original, which could change in between) that the caller checks against the
manifest and that ``add`` writes into the database, in chunks, in the transaction of the release row and its
audit entry: a release is never listed without its whole file, and a refused one leaves neither a row, nor a
chunk, nor the copy.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import delete, func, select, update

from collector.store import StoreError, releasefiles, utcnow
from collector.store import models as m
from collector.store.audit import Actor, append
from collector.store.regionscope import scoped
from collector.store.releasemodels import AgentRelease, AgentReleaseStagePause

RELEASES_DIR = "releases"
CHUNK = releasefiles.CHUNK


@dataclass(frozen=True)
class StagedFile:
    path: Path
    size: int
    sha256: str


def releases_dir(data_dir) -> Path:
    return Path(data_dir) / RELEASES_DIR


def stage_file(data_dir, source) -> StagedFile:
    """Copy ``source`` into the releases directory under a temporary name, hashing what is written (the copy
    is only read back by ``add`` and then discarded: it needs no fsync)."""
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
    except BaseException:
        os.unlink(tmp)
        raise
    return StagedFile(Path(tmp), size, h.hexdigest())


def discard(staged: StagedFile) -> None:
    try:
        os.unlink(staged.path)
    except FileNotFoundError:
        pass


def release_json(r: AgentRelease) -> dict:
    return {"version": r.version, "platform": r.platform, "file": r.file_name, "size": r.size, "sha256": r.sha256,
            "added_at": r.added_at, "paused_at": r.paused_at, "paused_reason": r.paused_reason}


def add(store, version: str, platform: str, file_name: str, size: int, sha256: str, manifest: bytes,
        actor: Actor, source, replace: bool = False,
        failed_builds: list[list[str]] | None = None) -> tuple[str, list[str]]:
    """Store a release row with the file ``source`` (the checked copy; its chunks, unless held whole already,
    which the same file added again also repairs) and audit it; ("added" | "replaced" | "unchanged", stages
    unpaused). Raises StoreError("release_exists") for another file under a (version, platform) already held,
    StoreError("release_file_changed") when ``source`` is not ``size`` bytes of digest ``sha256``.

    A replacement is another build: the collector's stage pauses of the version were about the old build's
    failures and are lifted with it (their alerts resolved), and ``failed_builds`` ([point, build] failed at
    this moment) are recorded with it, so the automatic pause does not count them against the new build (an
    agent that names its build is counted again once the new build fails too). An admin's pause stays: it is
    the admin's to resume."""
    with store.write_session() as s:
        row = s.get(AgentRelease, (version, platform))
        if row is not None and row.sha256 != sha256 and not replace:
            raise StoreError("release_exists", f"release {version} {platform} is already held with sha256 "
                                               f"{row.sha256}")
        releasefiles.write(s, sha256, size, source)
        if row is not None and row.sha256 == sha256 and row.manifest == manifest:
            return "unchanged", []
        if row is not None and not replace:
            raise StoreError("release_exists", f"release {version} {platform} is already held with sha256 "
                                               f"{row.sha256}")
        outcome = "added" if row is None else "replaced"
        if row is None:  # another platform of a version an admin paused is paused with it
            sibling = s.scalars(select(AgentRelease).where(AgentRelease.version == version,
                                                           AgentRelease.paused_at.is_not(None)).limit(1)).first()
            row = AgentRelease(version=version, platform=platform, paused_at=sibling.paused_at if sibling else None,
                               paused_reason=sibling.paused_reason if sibling else None)
            s.add(row)
        before = row.sha256
        row.file_name, row.size, row.sha256, row.manifest, row.added_at = file_name, size, sha256, manifest, utcnow()
        lifted = _lift_stages(s, version, None) if outcome == "replaced" else []
        if before and before != sha256:
            releasefiles.drop_unreferenced(s, before)
        append(s, actor, f"agent_release.{'add' if outcome == 'added' else 'replace'}", f"{version}/{platform}",
               {"file": file_name, "size": size, "sha256": sha256, **({"was": before} if before else {}),
                **({"failed_points": sorted({c for c, _ in failed_builds or []}), "failed_builds": failed_builds or [],
                   "stages_resumed": lifted} if outcome == "replaced" else {})})
    return outcome, lifted


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


def pause(store, version: str, reason: str, actor: Actor, details: dict | None = None) -> bool:
    """An admin's pause: every platform of a version, in every stage; False when none was running (unknown,
    or already paused), and then nothing is written."""
    now = utcnow()
    with store.write_session() as s:
        done = s.execute(update(AgentRelease).where(AgentRelease.version == version, AgentRelease.paused_at.is_(None))
                         .values(paused_at=now, paused_reason=reason)).rowcount
        if not done:
            return False
        append(s, actor, "agent_release.pause", version, {"reason": reason, **(details or {})})
    return True


def pause_stage(store, version: str, stage: str, reason: str, actor: Actor, details: dict, alert: dict,
                region: str) -> bool:
    """The collector's pause of ``version`` in one ``stage``, audited and alerted in one transaction; False
    (nothing written) when that stage was paused already."""
    now = utcnow()
    with store.write_session() as s:
        if s.get(AgentReleaseStagePause, (version, stage)) is not None:
            return False
        s.add(AgentReleaseStagePause(version=version, stage=stage, paused_at=now, paused_reason=reason))
        append(s, actor, "agent_release.pause", version, {"reason": reason, "stage": stage, **details}, region)
        s.add(m.Alert(**alert, pending_since=now, fired_at=now, observed_at=now, updated_at=now))
    return True


def _lift_stages(s, version: str, stage: str | None) -> list[str]:
    """Delete the stage pauses of ``version`` (one ``stage``, or all) and resolve their alerts; the stages."""
    now = utcnow()
    stmt = select(AgentReleaseStagePause.stage).where(AgentReleaseStagePause.version == version)
    if stage is not None:
        stmt = stmt.where(AgentReleaseStagePause.stage == stage)
    stages = sorted(s.scalars(stmt))
    if stages:
        s.execute(delete(AgentReleaseStagePause).where(AgentReleaseStagePause.version == version,
                                                       AgentReleaseStagePause.stage.in_(stages)))
        keys = {stage_alert_key(version, st) for st in stages}
        for alert in s.scalars(select(m.Alert).where(m.Alert.rule == "rollout_paused", m.Alert.target == version,
                                                     m.Alert.state != "resolved")):
            if alert.fingerprint in keys:
                alert.state, alert.resolved_at, alert.open_key, alert.updated_at = "resolved", now, None, now
    return stages


def stage_alert_key(version: str, stage: str) -> str:
    """The fingerprint of the alert of a stage's pause: one per (version, stage), whichever point tipped it."""
    return hashlib.sha256(f"rollout_paused\x1f{stage}\x1fagent.upgrade\x1f{version}".encode()).hexdigest()


def resume(store, version: str, actor: Actor, details: dict | None = None, stage: str | None = None) -> list[str]:
    """Serve a paused version again: with ``stage``, in that stage only (the collector's pause of it); else
    the admin's pause and every stage's. What was lifted ("all stages" as "*", then the stages); [] when
    nothing was paused, and then nothing is written."""
    with store.write_session() as s:
        lifted = []
        if stage is None and s.execute(update(AgentRelease).where(
                AgentRelease.version == version, AgentRelease.paused_at.is_not(None))
                .values(paused_at=None, paused_reason=None)).rowcount:
            lifted.append("*")
        lifted += _lift_stages(s, version, stage)
        if not lifted:
            return []
        if stage is None:  # every pause of the version is over: so is every alert that said it was paused
            now = utcnow()
            for alert in s.scalars(select(m.Alert).where(m.Alert.rule == "rollout_paused", m.Alert.target == version,
                                                         m.Alert.state != "resolved")):
                alert.state, alert.resolved_at, alert.open_key, alert.updated_at = "resolved", now, None, now
        append(s, actor, "agent_release.resume", version, {**(details or {}), "lifted": lifted})
    return lifted


def failed_at_resume(store, version: str) -> dict[str, set[str] | None]:
    """{point: builds} recorded as failed by the latest resume or replacement of ``version`` (none: neither);
    None for a point an older entry recorded without its builds (it stands for every build)."""
    with store.session() as s:
        details = s.scalar(select(m.AuditEntry.details).where(
            ((m.AuditEntry.action == "agent_release.resume") & (m.AuditEntry.target == version))
            | ((m.AuditEntry.action == "agent_release.replace") & m.AuditEntry.target.startswith(f"{version}/")))
            .order_by(m.AuditEntry.id.desc()).limit(1))
    details = details if isinstance(details, dict) else {}
    out: dict[str, set[str] | None] = {}
    if isinstance(details.get("failed_builds"), list):
        for item in details["failed_builds"]:
            if isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item):
                builds = out.setdefault(item[0], set())
                if builds is not None:
                    builds.add(item[1])
        return out
    found = details.get("failed_points")
    return {c: None for c in found if isinstance(c, str)} if isinstance(found, list) else {}


def stage_pauses(store, version: str | None = None) -> dict[tuple[str, str], dict]:
    """{(version, stage): {paused_at, paused_reason}} of the collector's stage pauses."""
    with store.session() as s:
        stmt = select(AgentReleaseStagePause)
        if version is not None:
            stmt = stmt.where(AgentReleaseStagePause.version == version)
        return {(p.version, p.stage): {"paused_at": p.paused_at, "paused_reason": p.paused_reason}
                for p in s.scalars(stmt)}


def held_sha256s(store, version: str) -> set[str]:
    """The digests of the builds held for ``version`` (one per platform)."""
    with store.session() as s:
        return set(s.scalars(select(AgentRelease.sha256).where(AgentRelease.version == version)))


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


def latest_results_within(store, check: str, status: str, scope: str = "/") -> list[tuple[str, str, dict]]:
    """(point code, its region path, details) of the latest result of ``check`` of every point within
    ``scope`` when it has ``status``: one read by region, however many points the scope holds."""
    with store.session() as s:
        stmt = (select(m.LatestResult.point_code, m.Point.region_path, m.LatestResult.details)
                .join(m.Point, m.Point.code == m.LatestResult.point_code)
                .where(m.LatestResult.check == check, m.LatestResult.status == status))
        return [(c, r, d or {}) for c, r, d in s.execute(scoped(stmt, m.Point.region_path, scope))]
