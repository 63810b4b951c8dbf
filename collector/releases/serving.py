"""What an agent may download: a release its own point's effective policy names, not paused, held here.

The answers of ``GET /api/v1/agent/releases/{version}/{platform}[/file]`` (collector/api/agentreleases.py),
decided in this order: 404 ``no_release`` (no such release held), 403 ``not_in_policy`` (the point's
effective policy does not name that version in ``agent.version``: an agent cannot fetch a release its region
has not been ordered to run), 409 ``rollout_paused`` (an admin paused the version, or the collector paused it
in the point's stage), 500 ``release_file_damaged`` (the file's chunks in the database do not make up the
signed file: named, logged, never served as a short or wrong 200/206; collector/store/releasefiles.py). The
file check comes last, so only a download that would be served reads the file through. And the one byte
range a resuming download asks for (``Range: bytes=N-`` or ``bytes=N-M``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from agent.versions import VERSION_RE, canonical
from agent.vocabulary import RELEASE_PLATFORMS
from collector.policy import service
from collector.store import releasefiles
from collector.store import releases as rows
from collector.store.releasemodels import AgentRelease

log = logging.getLogger("pointwatch.releases")
NO_RELEASE, NOT_IN_POLICY, PAUSED, DAMAGED = "no_release", "not_in_policy", "rollout_paused", "release_file_damaged"
STATUS = {NO_RELEASE: 404, NOT_IN_POLICY: 403, PAUSED: 409, DAMAGED: 500}
MESSAGE_CN = {
    NO_RELEASE: "采集端没有该版本、该平台的代理发布",
    NOT_IN_POLICY: "本服务点的策略未指定升级到该版本（agent.version）",
    PAUSED: "该版本的发布已暂停",
    DAMAGED: "采集端数据库中该发布文件不完整或已损坏；请在任一采集端用 agent-release add 重新添加同一文件",
}
RANGE = re.compile(r"^bytes=(\d{1,18})-(\d{0,18})$")


@dataclass(frozen=True)
class Decision:
    refusal: str | None
    release: AgentRelease | None = None
    damage: releasefiles.ChunksDamaged | None = None

    def detail(self) -> dict:
        """The refusal's answer: its code and Chinese message; for a damaged file, the chunk and the problem."""
        out = {"code": self.refusal, "message": MESSAGE_CN[self.refusal]}
        if self.damage is not None:
            where = f"第 {self.damage.chunk} 块" if self.damage.chunk is not None else "整个文件的 sha256 不符"
            out.update(message=f"{out['message']}（{where}）", chunk=self.damage.chunk, problem=self.damage.problem)
        return out


def policy_version(store, code: str) -> tuple[str | None, str | None]:
    """(the version the point's effective (issued) policy names in ``agent.version``, canonical; the stage
    that names it); None for what is not named."""
    from collector.releases.rollout import policy_version as named

    issued, eff = service.current(store, code)
    version = named(issued.policy) if issued is not None else None
    return version, (eff.origin.get("agent.version") if eff is not None and version is not None else None)


def decide(store, code: str, version: str, platform: str) -> Decision:
    if not VERSION_RE.match(version) or platform not in RELEASE_PLATFORMS:
        return Decision(NO_RELEASE)
    version = canonical(version)
    # The point's own policy first: a token learns nothing of releases its policy does not name (held or not).
    named, stage = policy_version(store, code)
    if named != version:
        return Decision(NOT_IN_POLICY)
    release = rows.get(store, version, platform)
    if release is None:
        return Decision(NO_RELEASE)
    if release.paused_at is not None or (stage is not None and (version, stage) in rows.stage_pauses(store, version)):
        return Decision(PAUSED, release)
    try:
        releasefiles.check(store, release.sha256, release.size)
    except releasefiles.ChunksDamaged as exc:
        log.error("release_file_damaged version=%s platform=%s sha256=%s chunk=%s problem=%r", version, platform,
                  release.sha256, exc.chunk, exc.problem)
        return Decision(DAMAGED, release, exc)
    return Decision(None, release)


def byte_range(header: str | None, size: int) -> tuple[int, int] | None | bool:
    """(first, last) byte of a ``Range`` header; None for no header (the whole file); False for a range this
    file cannot answer (416)."""
    if header is None:
        return None
    m = RANGE.match(header.strip())
    if not m:
        return False
    first = int(m.group(1))
    last = int(m.group(2)) if m.group(2) else size - 1
    if first >= size or last < first:
        return False
    return first, min(last, size - 1)
