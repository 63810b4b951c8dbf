"""The upgrade manager: a thread of the running agent that follows the policy's ``agent:`` section.

Outside a trial it checks, every minute, whether the policy names another version this agent may run; inside
the window it fetches and verifies the manifest, downloads the release (resumable, capped), verifies it, checks
that it starts, records the trial and asks the agent to hand over (agent/service.py stops cleanly, then execs).
In a trial process it is the watchdog: the sender's first acknowledgement of one of this version's reports
commits the trial (:meth:`on_ack`); none within the trial's watchdog time (counted while the trial process
runs, and written to upgrade.json as it goes: a reboot pauses it) rolls back to the previous binary.

:meth:`result` is the ``agent.upgrade`` result every report carries (messages in Chinese; see state.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from datetime import datetime
from pathlib import Path

from agent import transport
from agent.statedir import unsafe_to_start
from agent.upgrade import RELEASES_DIR, WATCHDOG_S, release_dir, upgrade_path
from agent.upgrade import launch as trial_rules
from agent.upgrade import state as st
from agent.upgrade.download import DownloadError, download, part_for_build
from agent.upgrade.handover import start_check
from agent.upgrade.launch import TRIAL, boot_identity, budget_of, file_sha256, rollback_refusal, rolled_back
from agent.upgrade.manifest import MAX_MANIFEST_BYTES, ManifestRefused, verify_manifest
from agent.upgrade.report import describe, fetch_problem
from agent.versions import parse_version
from agent.vocabulary import AGENT_UPGRADE
from agent.wire import Result, utcnow

log = logging.getLogger("pointwatch.upgrade")

CHECK_EVERY = 60.0   # seconds between looks at the policy (all local: no request unless there is work)
RETRY_AFTER = 300.0  # after the collector did not give the manifest or the file
# Downloads of one build whose digest does not match before that build counts as failed: a 2G line does
# corrupt a transfer now and then, and a good build must not be banned for it.
DIGEST_TRIES = 3
TRIAL_AGAIN_AFTER = 3600.0  # after a trial that never reached the collector (launch.py UNREACHABLE_TRIES)
TARGET = "代理程序"
RELEASES_PATH = "/api/v1/agent/releases"


def local_minute() -> int:
    now = datetime.now()  # the window is the PC's local time
    return now.hour * 60 + now.minute


class UpgradeManager(threading.Thread):
    def __init__(self, keeper, state, identity, ssl_ctx=None, speedup: float = 1.0, on_handover=None,
                 launch=None, clock=time.time, minute=local_minute, mono=time.monotonic):
        super().__init__(name="upgrade", daemon=True)
        self.keeper, self.state, self.identity, self.ssl_ctx = keeper, state, identity, ssl_ctx
        self.speedup, self.on_handover, self.clock, self.minute = speedup, on_handover, clock, minute
        self.path = upgrade_path(state.dir)
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self.handover_path: str | None = None
        self.progress: tuple[int, int] | None = None  # (bytes, size) of the download under way
        self.problem: str | None = None  # why the last attempt did not get on (warn; retried)
        self._target: str | None = None  # the policy's version the two above are about
        self.start_problem = dict(launch.problem) if launch is not None and launch.problem else {}
        self.trial = launch.state.get("trial") if launch is not None and launch.action == TRIAL else None
        self.mono, self._created = mono, time.monotonic()  # the latter the real clock, as transport's
        # Whether the collector answered anything during the trial (this launch, earlier ones from upgrade.json)
        # and how many sends got no answer at all (transport.SendError.unanswered).
        self._answered, self._unanswered = (bool(self.trial.get("answered")), int(self.trial.get("unanswered") or 0)) \
            if self.trial is not None else (False, 0)
        if self.trial is not None:  # the watchdog's count: what earlier launches ran, plus this process's time
            self._ran_before, self._ran_since, self._budget = (float(self.trial.get("ran_s") or 0), mono(),
                                                             budget_of(self.trial))
        try:
            self.cached = st.load(self.path)
            self.unreadable = None
        except st.StateUnreadable as exc:
            self.cached, self.unreadable = st.empty(), str(exc)

    # -- the loop ---------------------------------------------------------------------------------------------
    def run(self) -> None:
        while True:
            try:
                delay = self.step()
            except Exception:  # never end the thread: the running version keeps running
                log.exception("upgrade_step_crashed")
                delay = RETRY_AFTER / self.speedup
            if self.stopping.wait(delay):
                return

    def stop(self) -> None:
        self.stopping.set()

    def step(self) -> float:
        """One look; returns the wait before the next."""
        if self.trial is not None:
            return self._watch_trial()
        up = self.keeper.current().upgrade
        if up.version != self._target:  # what was said of another target is over
            self._target, self.problem, self.progress = up.version, None, None
        if not self._may_pursue(up):
            return CHECK_EVERY / self.speedup
        return self._pursue(up)

    def _may_pursue(self, up) -> bool:
        own = self.identity
        if not up.version or up.version == own.version or self.unreadable or self.handover_path:
            return False
        state = st.keep_failures_for(self.cached, up.version)
        if state is not self.cached:
            self._save(state)
        return (own.frozen and (up.downgrade or not self._older(up.version)) and bool(self.state.release_keys())
                and up.in_window(self.minute()))

    def _older(self, version: str) -> bool:
        return parse_version(version) < parse_version(self.identity.version)

    def _failed(self, version: str) -> dict | None:
        return next((f for f in reversed(self.cached.get("failed") or []) if f.get("version") == version), None)

    def _pursue(self, up) -> float:
        retry = RETRY_AFTER / self.speedup
        cfg = self.keeper.local
        url, token = cfg.collector.url, self.state.token()
        if not url or not token:
            self.problem = "尚未注册，无法从采集端下载新版本（请运行 pointwatch-agent enroll）"
            return retry
        base = f"{url}{RELEASES_PATH}/{up.version}/{self.identity.platform}"
        try:
            _status, _etag, raw = transport.get(base, token, cfg.collector.timeout, self.ssl_ctx,
                                                limit=MAX_MANIFEST_BYTES)
        except transport.SendError as exc:
            self.problem = fetch_problem(exc, up.version)
            log.warning("upgrade_manifest_fetch_failed version=%s status=%s error=%s", up.version, exc.status, exc)
            return retry
        self.problem = None
        refused_key = "manifest:" + hashlib.sha256(raw).hexdigest()  # a refused manifest: its bytes name it
        if st.failure_of(self.cached, up.version, refused_key):
            return retry
        try:
            release = verify_manifest(raw, self.state.release_keys(), up.version, self.identity.platform)
        except ManifestRefused as exc:
            if exc.garbled:  # a proxy's page, not a release: recorded as a failure it said "签名校验失败" for
                # good, and enough distinct pages pushed the record of a build that really failed out of
                # the 20 kept, so that build was tried again
                self.problem = f"采集端的回答不是发布清单（{exc.detail}；可能经过了代理或网关页面），稍后重试"
                log.warning("upgrade_manifest_garbled version=%s detail=%s", up.version, exc.detail)
                return retry
            return self._fail(up.version, refused_key, exc.reason, exc.detail)
        if st.failure_of(self.cached, up.version, release.sha256):  # failed before: only another build is tried
            return retry
        if self._trial_later(up.version, release.sha256):
            return retry
        final = release_dir(self.state.dir, up.version) / release.file
        part = final.with_name(final.name + ".part")
        if not (final.exists() and final.stat().st_size == release.size and file_sha256(final) == release.sha256):
            part_for_build(part, release.sha256)
            try:
                done = download(base + "/file", token, part, release.size, up.max_kbps,
                                timeout=cfg.collector.timeout, ctx=self.ssl_ctx, wait=self._pause,
                                on_progress=lambda p: setattr(self, "progress", (p.done, p.size)))
            except DownloadError as exc:
                self.problem = f"下载 {up.version} 未完成（{exc}），稍后继续"
                log.warning("upgrade_download_failed version=%s error=%s", up.version, exc)
                return retry
            if not done:  # the window ended or the agent stops: the part stays for the next window
                return CHECK_EVERY / self.speedup
            if part.stat().st_size != release.size:
                return self._fail(up.version, release.sha256, st.SIZE_MISMATCH,
                                  f"{part.stat().st_size} bytes, the manifest says {release.size}")
            actual = file_sha256(part)
            if actual != release.sha256:
                part.unlink(missing_ok=True)
                return self._corrupt(up.version, release.sha256, actual)
            if self.cached.get("corrupt"):
                self._save({**self.cached, "corrupt": None})
            os.replace(part, final)
            part.with_name(part.name + ".sha256").unlink(missing_ok=True)
        os.chmod(final, 0o755)
        self.progress, self.problem = None, None
        # The download can take an hour on a 2G line: the policy may have named another version meanwhile,
        # or the county (or the collector by itself) paused this one. Asked again right before the switch.
        if self.keeper.current().upgrade.version != up.version:
            return CHECK_EVERY / self.speedup
        try:
            transport.get(base, token, cfg.collector.timeout, self.ssl_ctx, limit=MAX_MANIFEST_BYTES)
        except transport.SendError as exc:
            self.problem = fetch_problem(exc, up.version)
            log.warning("upgrade_withheld_before_switch version=%s status=%s", up.version, exc.status)
            return retry
        trouble = unsafe_to_start(final, self.state.dir)  # agent/statedir.py: before it runs at all
        if trouble:
            return self._fail(up.version, release.sha256, st.UNSAFE_FILE, trouble)
        trouble = start_check(str(final), up.version)
        if trouble:
            return self._fail(up.version, release.sha256, st.DOES_NOT_START, trouble)
        self._begin_trial(release, str(final))
        return CHECK_EVERY / self.speedup

    def _corrupt(self, version: str, sha256: str, actual: str) -> float:
        """A downloaded file whose digest does not match: deleted, and downloaded again up to DIGEST_TRIES
        times in all (counted in upgrade.json, so a restart does not reset it) before the build is failed."""
        seen = self.cached.get("corrupt") or {}
        count = int(seen.get("count") or 0) + 1 if (seen.get("version"), seen.get("sha256")) == (version, sha256) else 1
        detail = f"sha256 {actual}, the manifest says {sha256}"
        if count >= DIGEST_TRIES:
            self._save({**self.cached, "corrupt": None})
            return self._fail(version, sha256, st.DIGEST_MISMATCH, f"{detail} ({count} downloads)")
        log.warning("upgrade_download_corrupt version=%s try=%d of=%d %s", version, count, DIGEST_TRIES, detail)
        self._save({**self.cached, "corrupt": {"version": version, "sha256": sha256, "count": count}})
        self.progress = None
        self.problem = f"下载的版本 {version} 与发布清单的 SHA-256 摘要不符（第 {count} 次），已删除，稍后重新下载"
        return RETRY_AFTER / self.speedup

    def _trial_later(self, version: str, sha256: str) -> bool:
        """The last trial of this build never reached the collector: the next waits TRIAL_AGAIN_AFTER (a wall
        clock set back does not make it wait longer)."""
        seen = self.cached.get("unreachable") or {}
        if (seen.get("version"), seen.get("sha256")) != (version, sha256):
            return False
        since = self.clock() - float(seen.get("at") or 0)
        return 0 <= since < TRIAL_AGAIN_AFTER / self.speedup

    def _pause(self, seconds: float) -> bool:
        """The downloader's wait: True (pause) when the agent stops or the window is over."""
        if self.stopping.wait(seconds):
            return True
        upgrade = self.keeper.current().upgrade
        return upgrade.version != self._target or not upgrade.in_window(self.minute())

    def _begin_trial(self, release, path: str) -> None:
        now = self.clock()
        try:  # what the rollback checks before it starts this binary again (launch.py rollback_refusal)
            own_sha = file_sha256(self.identity.path)
        except OSError as exc:
            log.warning("upgrade_own_digest_unreadable path=%s error=%s", self.identity.path, exc)
            own_sha = None
        trial = {"version": release.version, "path": path, "sha256": release.sha256,
                 "from_version": self.identity.version, "from_path": self.identity.path, "from_sha256": own_sha,
                 "started_at": now, "budget_s": WATCHDOG_S / self.speedup, "ran_s": 0, "launches": 0, "boots": 0,
                 "boot_id": boot_identity()}
        self._save({**self.cached, "trial": trial})
        log.info("upgrade_handover_to_trial version=%s path=%s deadline_s=%.0f", release.version, path,
                 WATCHDOG_S / self.speedup)
        self._hand_over(path)

    def _hand_over(self, path: str) -> None:
        self.handover_path = path
        if self.on_handover:
            self.on_handover(path)

    def _fail(self, version: str, sha256: str, reason: str, detail: str) -> float:
        log.error("upgrade_failed version=%s reason=%s detail=%s", version, reason, detail)
        self.progress, self.problem = None, None
        self._save(st.with_failure(self.cached, version, sha256, reason, detail, self.clock()))
        return CHECK_EVERY / self.speedup

    def handover_failed(self, path: str, exc: Exception) -> None:
        """The exec itself failed (agent/service.py): the trial never ran."""
        trial = self.cached.get("trial")
        if not trial or trial.get("path") != path:  # a rollback's exec failed: nothing more to record
            return
        state = {**self.cached, "trial": None}
        self._save(st.with_failure(state, trial["version"], trial.get("sha256") or "", st.DOES_NOT_START,
                                   f"exec {path}: {exc}", self.clock()))

    # -- the trial --------------------------------------------------------------------------------------------
    def _watch_trial(self) -> float:
        ran = self._ran_before + (self.mono() - self._ran_since)
        remaining = self._budget - ran
        if remaining > 0:
            self._record_ran(ran)
            return min(remaining, CHECK_EVERY / self.speedup)
        with self._lock:
            trial, self.trial = self.trial, None
        if trial is None:  # committed meanwhile
            return CHECK_EVERY / self.speedup
        detail = f"no report of {trial['version']} was acknowledged within {self._budget:.0f} s of running"
        if self._answered_during_trial() or not self._unanswered:  # an answer (any request, any status), or no send
            state, reason = rolled_back(self._reload(), trial, detail, self.clock()), st.ROLLED_BACK
        else:  # every send got no answer at all: the line, not the build (tried again, UNREACHABLE_TRIES)
            detail += f"; none of {self._unanswered} sends got any answer from the collector"
            state, reason = trial_rules.unreachable_rolled_back(self._reload(), trial, detail, self.clock())
        log.error("upgrade_rollback version=%s to=%s reason=%s detail=%s", trial["version"], trial.get("from_path"),
                  reason, detail)
        self._save(state)
        refused, reason = rollback_refusal(trial, state, self.state.dir), st.DIGEST_MISMATCH
        if not refused:
            refused, reason = unsafe_to_start(trial.get("from_path"), self.state.dir), st.UNSAFE_FILE
        if refused:  # the same rules as the launch decision's: this binary runs on, and says so
            log.error("upgrade_path_refused action=rollback path=%s detail=%s", trial.get("from_path"), refused)
            self.start_problem = {"reason": reason, "version": trial.get("from_version"), "detail": refused}
            return CHECK_EVERY / self.speedup
        self._hand_over(trial["from_path"])
        return CHECK_EVERY / self.speedup

    def _record_ran(self, ran: float) -> None:
        """The watchdog's count into upgrade.json, so a reboot or a power cut resumes it rather than restart it
        (at most one step of it is lost). Under the lock: a commit meanwhile is never overwritten."""
        with self._lock:
            if self.trial is None:
                return
            state = self._reload()
            trial = state.get("trial")
            if trial and trial.get("version") == self.trial.get("version"):
                self._save({**state, "trial": {**trial, "ran_s": round(ran, 1), "answered": int(self._answered_during_trial()),
                                               "unanswered": self._unanswered}})

    def on_ack(self, batch) -> None:
        """The sender's hook after the collector acknowledged ``batch``: a report of this version commits the trial."""
        if self.trial is None:
            return
        self._answered = True
        try:
            self._commit_if_mine(batch)
        except Exception:  # the sender's thread must go on whatever happens here; the watchdog still decides
            log.exception("upgrade_commit_crashed")

    def _answered_during_trial(self) -> bool:  # by the sender's hooks, or any request's (transport.last_answer)
        return self._answered or transport.last_answer() >= self._created

    def on_send_failed(self, exc) -> None:
        """The sender's hook after a send raised transport.SendError: whether anything answered it at all."""
        if self.trial is None:
            return
        if getattr(exc, "unanswered", False):
            self._unanswered += 1
        else:
            self._answered = True

    def _commit_if_mine(self, batch) -> None:
        mine = any(_version_of(body) == self.identity.version for body in batch.bodies)
        if not mine:  # only reports queued before the hand-over: the new version has not reported yet
            return
        with self._lock:
            trial, self.trial = self.trial, None
        if trial is None:
            return
        state = self._reload()
        self._save({**state, "trial": None, "active": {"version": trial["version"], "path": trial["path"],
                                                        "sha256": trial.get("sha256")},
                    "previous": {"version": trial.get("from_version"), "path": trial.get("from_path")},
                    "last": {"event": "committed", "version": trial["version"], "at": self.clock()}})
        log.info("upgrade_committed version=%s previous=%s", trial["version"], trial.get("from_version"))
        self._prune_releases(keep={trial["version"], trial.get("from_version")})

    def _prune_releases(self, keep: set) -> None:
        """An old office PC's disk: only the active release and the one it came from stay in releases/."""
        import shutil

        root = Path(self.state.dir) / RELEASES_DIR
        for child in (root.iterdir() if root.is_dir() else ()):
            if child.is_dir() and child.name not in keep:
                shutil.rmtree(child, ignore_errors=True)
                log.info("upgrade_release_removed version=%s", child.name)

    # -- state --------------------------------------------------------------------------------------------------
    def _reload(self) -> dict:
        try:
            self.cached = st.load(self.path)
        except st.StateUnreadable as exc:
            log.error("upgrade_state_unreadable error=%s", exc)
        return self.cached

    def _save(self, state: dict) -> None:
        self.cached = state
        try:
            st.save(self.path, state)
        except OSError as exc:
            log.error("upgrade_state_not_saved file=%s error=%s", self.path, exc)

    # -- the result -----------------------------------------------------------------------------------------------
    def result(self) -> Result:
        status, message, details = self.describe()
        return Result(check=AGENT_UPGRADE, target=TARGET, status=status, message=message, details=details,
                      observed_at=utcnow())

    def describe(self) -> tuple[str, str, dict]:
        return describe(self, self.keeper.current().upgrade)


def _version_of(body: str) -> str | None:
    try:
        return json.loads(body).get("agent_version")
    except (ValueError, AttributeError):
        return None
