"""``<state_dir>/upgrade.json``: which release is active, which one is on trial, which ones failed.

Written atomically (a temporary file, fsync, rename, fsync of the directory), so a power cut leaves the old
state or the new one: the launch decision at the next start (launch.py) must never see half a file.

    {"format": 1,
     "active":   {"version", "path", "sha256"} | null,   # what a start of another binary execs (null: the base)
     "previous": {"version", "path"} | null,             # what ran before the active one
     "base":     {"version", "path"} | null,             # the installed binary, as it last started
     "trial":    {"version", "path", "sha256", "from_version", "from_path", "from_sha256", "started_at",
                  "budget_s", "ran_s", "launches", "boots", "boot_id", "answered", "unanswered"} | null,
     "failed":   [{"version", "sha256", "reason", "detail", "at"}],   # never tried again (see manager.py)
     "corrupt":  {"version", "sha256", "count"} | null,  # downloads of that build whose digest did not match
     "unreachable": {"version", "sha256", "count", "at"} | null,  # trials of that build that never reached the collector
     "last":     {"event": "committed" | "rolled_back", "version", "at"} | null}

Times are Unix seconds; ``budget_s``/``ran_s`` are seconds the trial process ran (launch.py says why). Also the reasons an upgrade fails, with what the county staff read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

FORMAT = 1

# Why an upgrade failed: details.reason of the agent.upgrade result (the collector's rollout view groups by it).
BAD_SIGNATURE, DIGEST_MISMATCH, SIZE_MISMATCH, WRONG_VERSION, DOES_NOT_START, ROLLED_BACK = (
    "bad_signature", "digest_mismatch", "size_mismatch", "wrong_version", "does_not_start", "rolled_back")
UNSAFE_FILE = "unsafe_file"  # someone other than SYSTEM/Administrators (root/the agent) could have written it
# The trial ran out its time while every send failed with no answer at all (a 2G line or a county-wide outage):
# rolled back, tried again later, never a ban nor a build fault by itself (manager.py UNREACHABLE_TRIES).
COLLECTOR_UNREACHABLE = "collector_unreachable"
REASONS = (BAD_SIGNATURE, DIGEST_MISMATCH, SIZE_MISMATCH, WRONG_VERSION, DOES_NOT_START, ROLLED_BACK, UNSAFE_FILE,
           COLLECTOR_UNREACHABLE)
# The reasons only the build itself explains: it did not start here, or it ran and never got a report through
# (the collector verified its signature and file when the build was added, so a signature, size or digest
# refused on a point is that point's download or disk, or the point itself; an unsafe file is the point's
# permissions). Only these count towards the collector's automatic pause of a rollout stage
# (collector/releases/rollout.py).
BUILD_FAULTS = frozenset({DOES_NOT_START, ROLLED_BACK})
REASON_CN = {
    BAD_SIGNATURE: "发布包签名校验失败，已拒绝运行（不是发布密钥签发的，或内容已被改动）",
    DIGEST_MISMATCH: "下载的文件与发布清单的 SHA-256 摘要不符，已拒绝运行",
    SIZE_MISMATCH: "下载的文件大小与发布清单不符，已拒绝运行",
    WRONG_VERSION: "发布清单的版本或平台与策略要求不符，已拒绝运行",
    DOES_NOT_START: "新版本无法在本机启动（--version 检查未通过）",
    ROLLED_BACK: "新版本未能在规定时间内成功发送报告，已自动回退到原版本",
    UNSAFE_FILE: "新版本的文件或其所在目录可被系统和管理员以外的本机用户改写（或权限无法读取），已拒绝运行",
    COLLECTOR_UNREACHABLE: "新版本试运行期间一直无法连接采集端，已回退到原版本，稍后会再次尝试",
}
# What the point or the county does about it (the result's message ends with it).
REMEDY_CN = {
    BAD_SIGNATURE: "请县级管理员核实该发布包；若本机未保存发布签名公钥，请重新注册（pointwatch-agent enroll）",
    DIGEST_MISMATCH: "请县级管理员重新上传该发布包，或在策略中指定其他版本",
    SIZE_MISMATCH: "请县级管理员重新上传该发布包，或在策略中指定其他版本",
    WRONG_VERSION: "请县级管理员检查发布包的版本与平台",
    DOES_NOT_START: "请县级管理员检查该版本是否适用于本机系统，或在策略中指定其他版本",
    ROLLED_BACK: "请检查本机到采集端的网络，并请县级管理员查看该版本的问题；本机不会再次尝试该版本",
    UNSAFE_FILE: "请县级管理员检查本机状态目录的权限（只应允许 SYSTEM 和管理员写入），查明是否有人放置或改动了文件",
    COLLECTOR_UNREACHABLE: "请检查本机到采集端的网络；网络恢复后本机会自动再次尝试该版本",
}


class StateUnreadable(Exception):
    pass


def empty() -> dict:
    return {"format": FORMAT, "active": None, "previous": None, "base": None, "trial": None, "failed": [],
            "corrupt": None, "unreachable": None, "last": None}


def load(path: Path) -> dict:
    """The state (an empty one when the file does not exist); StateUnreadable when it cannot be read."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return empty()
    except (OSError, ValueError) as exc:
        raise StateUnreadable(f"{path}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise StateUnreadable(f"{path}: not an upgrade state of format {FORMAT}")
    out = empty()
    out.update({k: doc.get(k) for k in out if k in doc})
    if not isinstance(out["failed"], list):
        raise StateUnreadable(f"{path}: 'failed' is not a list")
    # A file edited by hand (or by someone at the PC) must be refused here, as a whole, rather than fail
    # later inside the report of every cycle.
    for name in ("active", "previous", "base", "trial", "corrupt", "unreachable", "last"):
        if out.get(name) is not None and not _fields_ok(out[name]):
            raise StateUnreadable(f"{path}: '{name}' is not an object of text and numbers")
    for i, item in enumerate(out["failed"]):
        if not _fields_ok(item):
            raise StateUnreadable(f"{path}: failed[{i}] is not an object of text and numbers")
    return out


TEXT_FIELDS = frozenset({"version", "path", "sha256", "from_version", "from_path", "from_sha256", "reason", "detail",
                         "event", "boot_id"})


def _fields_ok(value) -> bool:
    """An object of the file's shape: its text fields text, the rest numbers (times, counts) or null."""
    if not isinstance(value, dict):
        return False
    for k, v in value.items():
        if not isinstance(k, str) or isinstance(v, bool):
            return False
        if not (isinstance(v, str) if k in TEXT_FIELDS else (v is None or isinstance(v, (str, int, float)))):
            if not (k in TEXT_FIELDS and v is None):
                return False
    return True


def save(path: Path, state: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # A fresh name, created exclusively: a file planted under a fixed temporary name would otherwise be
    # written through (and renamed into place keeping its planter's ownership).
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    data = json.dumps(state, ensure_ascii=False, indent=1).encode("utf-8")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if hasattr(os, "O_DIRECTORY"):  # the rename itself must survive a power cut (POSIX only)
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def failure_of(state: dict, version: str, sha256: str) -> dict | None:
    return next((f for f in state.get("failed") or [] if f.get("version") == version and f.get("sha256") == sha256),
                None)


def with_failure(state: dict, version: str, sha256: str, reason: str, detail: str, now: float) -> dict:
    """``state`` with the failure of (version, sha256) recorded (replacing an earlier record of the same)."""
    failed = [f for f in state.get("failed") or [] if (f.get("version"), f.get("sha256")) != (version, sha256)]
    failed.append({"version": version, "sha256": sha256, "reason": reason, "detail": detail[:500], "at": now})
    return {**state, "failed": failed[-20:]}


def keep_failures_for(state: dict, version: str | None) -> dict:
    """A policy naming another version ends the ban of the others (the contract: "until the policy names a
    different version"): only failures of ``version`` are kept. One recorded under another text of the same
    numbers (an older agent kept the policy's text as written: "0.2") is kept under ``version``'s."""
    from agent.versions import canonical_or_none

    want = canonical_or_none(version) if version else None
    failed = [f if f.get("version") == version else {**f, "version": version}
              for f in state.get("failed") or []
              if f.get("version") == version or (want is not None and canonical_or_none(f.get("version")) == want)]
    same = failed == list(state.get("failed") or [])
    return state if same else {**state, "failed": failed}
