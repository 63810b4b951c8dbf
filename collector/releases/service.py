"""Adding and pausing agent releases: the manifest checked, the file checked against it, then stored.

The file is first copied into the store's releases directory and hashed there, and it is that copy (not the
admin's original, which could change in between) that must match the signed manifest; a refused release
leaves neither its file nor a row behind.
"""

from __future__ import annotations

import logging
from pathlib import Path

from collector.releases import manifest as mf
from collector.store import StoreError
from collector.store import releases as rows
from collector.store.audit import Actor

log = logging.getLogger("pointwatch.releases")


def add(store, data_dir, settings, path: str, version: str, platform: str, manifest_path: str | None,
        actor: Actor, replace: bool = False) -> tuple[str, mf.Manifest]:
    """Verify and store a release; (outcome, manifest). Raises mf.ReleaseRefused naming what is wrong."""
    mf.check_version(version)
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
    try:
        mf.verify_file(signed, staged.size, staged.sha256)
        rows.keep(data_dir, staged)
    except BaseException:
        rows.discard(staged)
        raise
    try:
        outcome = rows.add(store, version, platform, signed.file, signed.size, signed.sha256, raw, actor, replace)
    except StoreError as exc:  # another admin added it since the look above
        raise mf.ReleaseRefused(exc.code, f"版本 {version}（{platform}）已有另一个文件；确需替换请加 --replace") from None
    log.info("agent_release_%s version=%s platform=%s sha256=%s key=%s", outcome, version, platform,
             signed.sha256, signed.key_id)
    return outcome, signed


def pause(store, version: str, actor: Actor) -> bool:
    return rows.pause(store, version, f"由 {actor.name} 手动暂停", actor, {"by": "admin"})


def resume(store, version: str, actor: Actor) -> bool:
    """Serve a paused version again. The points failed at this moment are recorded with the resume: the
    automatic pause counts only failures after it (collector/releases/rollout.py)."""
    from collector.releases.rollout import failed_points

    return rows.resume(store, version, actor, {"failed_points": failed_points(store, version)})
