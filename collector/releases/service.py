"""Adding and pausing agent releases: the manifest checked, the file checked against it, then stored.

The file is first copied into the data dir and hashed there, and it is that copy (not the admin's original,
which could change in between) that must match the signed manifest and that goes into the database, with the
release row (collector/store/releases.py), so every collector on the database serves it; the copy is removed
either way, and a refused release leaves neither its file nor a row behind.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from collector.releases import manifest as mf
from collector.store import StoreError
from collector.store import releases as rows
from collector.store.audit import Actor

log = logging.getLogger("pointwatch.releases")


def add(store, data_dir, settings, path: str, version: str, platform: str, manifest_path: str | None,
        actor: Actor, replace: bool = False) -> Added:
    """Verify and store a release. Raises mf.ReleaseRefused naming what is wrong."""
    version = mf.check_version(version)  # canonical: the text agents ask for and policies are compared in
    mf.check_platform(platform)
    manifest_path = manifest_path or f"{path}.release.json"
    try:
        raw = Path(manifest_path).read_bytes()
    except OSError as exc:
        raise mf.ReleaseRefused("no_manifest", f"无法读取发布清单 {manifest_path}（{exc.strerror}）；"
                                               "先在离线机上用 agent-release sign 签名") from None
    signed = mf.verify(raw, settings.public_keys, version, platform)
    held = rows.get(store, version, platform)
    if held is not None and held.sha256 != signed.sha256 and not replace:
        raise mf.ReleaseRefused("release_exists", f"版本 {version}（{platform}）已有另一个文件（sha256 {held.sha256}）；"
                                                  "确需替换请加 --replace")
    try:
        staged = rows.stage_file(data_dir, path)
    except OSError as exc:
        raise mf.ReleaseRefused("no_file", f"无法读取发布文件 {path}（{exc.strerror}）") from None
    from collector.releases.rollout import failed_builds

    try:
        mf.verify_file(signed, staged.size, staged.sha256)
        args = (store, version, platform, signed.file, signed.size, signed.sha256, raw, actor, staged.path, replace,
                failed_builds(store, version))
        try:
            outcome, lifted = rows.add(*args)
        except IntegrityError:  # another host wrote the same file's chunks at the same moment: they are held now
            outcome, lifted = rows.add(*args)
    except StoreError as exc:
        if exc.code == "release_file_changed":  # the copy changed under us between its check and its storing
            raise mf.ReleaseRefused(exc.code, f"发布文件的副本 {staged.path} 在校验后被改动；请重新添加") from None
        # another admin added it since the look above
        raise mf.ReleaseRefused(exc.code, f"版本 {version}（{platform}）已有另一个文件；确需替换请加 --replace") from None
    finally:
        rows.discard(staged)
    log.info("agent_release_%s version=%s platform=%s sha256=%s key=%s stages_resumed=%s", outcome, version,
             platform, signed.sha256, signed.key_id, ",".join(lifted) or "-")
    return Added(outcome, signed, lifted, held is not None and held.paused_at is not None)


@dataclass(frozen=True)
class Added:
    """What ``add`` did: the outcome, the manifest, the stages whose automatic pause a replacement lifted,
    and whether an admin's pause still holds the version (a replacement does not lift it)."""

    outcome: str
    signed: mf.Manifest
    stages_resumed: list[str]
    still_paused: bool


def canonical_version(version: str) -> str:
    """What the admin typed for pause/resume, as the version is held ("0.2" is "0.2.0")."""
    from agent.versions import canonical_or_none

    return canonical_or_none(version) or version


def pause(store, version: str, actor: Actor) -> bool:
    """An admin's pause: every stage. (The collector's own pause holds one stage: rollout.py.)"""
    return rows.pause(store, canonical_version(version), f"由 {actor.name} 手动暂停", actor, {"by": "admin"})


def resume(store, version: str, actor: Actor, stage: str | None = None) -> list[str]:
    """Serve a paused version again, everywhere or in one ``stage``; what was lifted ("*": the admin's pause).
    The points failed at this moment are recorded with the resume: the automatic pause counts only failures
    after it (collector/releases/rollout.py)."""
    from collector.releases.rollout import failed_builds

    version = canonical_version(version)
    builds = failed_builds(store, version)
    return rows.resume(store, version, actor, {"failed_points": sorted({c for c, _ in builds}),
                                               "failed_builds": builds}, stage)
