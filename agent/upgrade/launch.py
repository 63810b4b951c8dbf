"""The launch decision: what a starting ``run`` does, from upgrade.json, its own version, this boot and the time.

:func:`decide` is pure (docs/en/operations.md has its table; tests/test_agent_upgrade_launch.py checks it):

- the trial version starting, launches < 1, with watchdog time left -> run it as the trial (launches += 1);
- the trial version starting again in another boot (a reboot or a power cut, not a failure of the build),
  at most MAX_BOOTS times -> run it as the trial again;
- the trial version starting again without a commit in the same boot (it crashed or was restarted), or
  with its watchdog time used up -> roll back: the failure recorded, the previous binary exec'd;
- another binary starting while a trial is open: in another boot (systemd starts the base binary after a
  reboot) -> exec the trial again (the same bound); else the trial's process ended without a commit: the
  failure is recorded, then as below;
- the base binary starting, newer than the active release and not the base recorded before (IT installed
  a newer build by hand) -> run it, the active release cleared;
- a binary other than the active one starting (the base binary systemd starts after a reboot) -> exec the
  active one, after its SHA-256 is checked again (a mismatch: this binary runs, and says so);
- otherwise: run.

The trial's watchdog counts the time the trial process actually ran (``ran_s``, written by the watchdog as it
runs), never the wall clock: an NTP jump or a PC switched off for the night is no failure of the build.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from agent.upgrade import RELEASES_DIR, WATCHDOG_S
from agent.upgrade import state as st

log = logging.getLogger("pointwatch.upgrade")

RUN, TRIAL, ROLLBACK, EXEC_ACTIVE, EXEC_TRIAL = "run", "trial", "rollback", "exec_active", "exec_trial"
EXECS = (ROLLBACK, EXEC_ACTIVE, EXEC_TRIAL)  # the decisions that start another binary in this one's place
# Trials of one build (version + sha256) that end with the collector never answering, before the build
# counts as rolled back for good: a bound on what a line down (or a build that cannot connect) costs.
UNREACHABLE_TRIES = 3
MAX_BOOTS = 3  # launches a trial gets in later boots before a restart counts as its failure
BOOT_TIME_SLACK_S = 5  # Windows' boot time is computed (now - uptime): it wobbles by a second or so


@dataclass(frozen=True)
class Decision:
    action: str
    state: dict                 # what upgrade.json says from now on (the same object: nothing to write)
    path: str | None = None     # the binary to exec (EXECS)
    sha256: str | None = None   # what that binary must hash to (EXEC_ACTIVE, EXEC_TRIAL; ROLLBACK: if recorded)
    why: str = ""
    problem: dict = field(default_factory=dict)  # a failure found at start, for the first reports


def rolled_back(state: dict, trial: dict, detail: str, now: float) -> dict:
    out = st.with_failure(state, trial["version"], trial.get("sha256") or "", st.ROLLED_BACK, detail, now)
    return {**out, "trial": None, "last": {"event": "rolled_back", "version": trial["version"], "at": now}}


def unreachable_rolled_back(state: dict, trial: dict, detail: str, now: float) -> tuple[dict, str]:
    """(state, reason) after a trial whose every send got no answer at all: COLLECTOR_UNREACHABLE, counted in
    ``unreachable`` and tried again later (no failure recorded), until the UNREACHABLE_TRIES-th such trial of
    the build, which is ROLLED_BACK as any other."""
    seen = state.get("unreachable") or {}
    key = (trial["version"], trial.get("sha256") or "")
    count = int(seen.get("count") or 0) + 1 if (seen.get("version"), seen.get("sha256")) == key else 1
    if count >= UNREACHABLE_TRIES:
        out = rolled_back(state, trial, f"{detail} ({count} trials)", now)
        return {**out, "unreachable": None}, st.ROLLED_BACK
    return {**state, "trial": None, "unreachable": {"version": key[0], "sha256": key[1], "count": count, "at": now},
            "last": {"event": "rolled_back", "version": trial["version"], "at": now}}, st.COLLECTOR_UNREACHABLE


def budget_of(trial: dict) -> float:
    """The seconds of running a trial has to get a report acknowledged. A trial recorded with only a
    wall-clock ``deadline`` (by an agent before ``budget_s``) gets what that deadline gave it."""
    if trial.get("budget_s") is not None:
        return float(trial["budget_s"])
    if trial.get("deadline") is not None and trial.get("started_at") is not None:
        return float(trial["deadline"]) - float(trial["started_at"])
    return WATCHDOG_S


def same_boot(a: str, b: str) -> bool:
    if a.startswith("time:") and b.startswith("time:"):
        try:
            return abs(float(a[5:]) - float(b[5:])) <= BOOT_TIME_SLACK_S
        except ValueError:
            pass
    return a == b


def _rebooted(trial: dict, boot: str | None) -> bool:
    """This start is in another boot than the trial's last launch, and the trial may have another one. An
    unknown boot on either side is the same boot: a restart then counts against the build, as it did."""
    seen = trial.get("boot_id")
    return bool(boot and seen and not same_boot(boot, seen)) and int(trial.get("boots") or 0) < MAX_BOOTS


def decide(state: dict, own_version: str, own_path: str, now: float, boot: str | None = None,
           base: bool = False) -> Decision:
    """``boot``: this boot's identity (:func:`boot_identity`); ``base``: the starting binary is the installed
    one (not under releases/)."""
    trial = state.get("trial")
    base = base and not (trial and trial.get("path") == own_path)  # the trial's binary is never the base
    recorded = state.get("base") or {}  # as the base last started: a change is a binary installed since
    reinstalled = (recorded.get("version"), recorded.get("path")) != (own_version, own_path)
    if base and reinstalled:
        state = {**state, "base": {"version": own_version, "path": own_path}}
    if trial:
        boots = int(trial.get("boots") or 0)
        if trial.get("version") == own_version:
            if float(trial.get("ran_s") or 0) >= budget_of(trial):
                detail = "the trial ran its whole watchdog time without an acknowledged report"
                return Decision(ROLLBACK, rolled_back(state, trial, detail, now), trial.get("from_path"),
                                trial.get("from_sha256"), why=detail)
            if int(trial.get("launches") or 0) < 1:
                return Decision(TRIAL, {**state, "trial": {**trial, "launches": int(trial.get("launches") or 0) + 1,
                                                           "boot_id": boot or trial.get("boot_id")}},
                                why="first start of the trial")
            if _rebooted(trial, boot):
                return Decision(TRIAL, {**state, "trial": {**trial, "boots": boots + 1, "boot_id": boot}},
                                why="the trial starts again after a restart of the PC")
            detail = "the trial started again before a report was acknowledged (it crashed or was restarted)"
            return Decision(ROLLBACK, rolled_back(state, trial, detail, now), trial.get("from_path"),
                            trial.get("from_sha256"), why=detail)
        if _rebooted(trial, boot):  # systemd starts the base binary after a reboot: the trial goes on
            again = {**trial, "launches": 0, "boots": boots + 1, "boot_id": boot}
            return Decision(EXEC_TRIAL, {**state, "trial": again}, trial.get("path"), trial.get("sha256"),
                            why="the PC restarted during the trial of " + str(trial.get("version")))
        detail = f"version {own_version} started while the trial of {trial.get('version')} was not committed"
        state = rolled_back(state, trial, detail, now)
        log.warning("upgrade_trial_abandoned trial=%s started=%s", trial.get("version"), own_version)
    active = state.get("active")
    if base and reinstalled and active and _newer(own_version, active.get("version")):
        # Installed by hand over the base binary, newer than the release the agent had upgraded itself to:
        # IT meant this build to run. (The same base as before, newer than the active release, is a
        # downgrade the policy asked for: the active release runs, below.)
        log.warning("upgrade_base_newer base=%s active=%s", own_version, active.get("version"))
        return Decision(RUN, {**state, "active": None,
                              "previous": {"version": active.get("version"), "path": active.get("path")}},
                        why=f"the installed binary {own_version} is newer than the active {active.get('version')}")
    if active and active.get("version") != own_version and active.get("path") != own_path:
        return Decision(EXEC_ACTIVE, state, active.get("path"), active.get("sha256"),
                        why=f"the active release is {active.get('version')}")
    return Decision(RUN, state, why="nothing to change")


def _newer(version: str, than) -> bool:
    from agent.versions import parse_version

    try:
        return parse_version(version) > parse_version(str(than))
    except ValueError:  # a version this build cannot read is never "older"
        return False


def boot_identity() -> str | None:
    """This boot: Linux's boot_id; Windows' boot time (psutil) as ``time:<unix seconds>``; None unknown."""
    if sys.platform == "win32":
        try:
            import psutil

            return f"time:{psutil.boot_time():.0f}"
        except Exception:  # noqa: BLE001 (unknown is an answer: the same boot)
            return None
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip() or None
    except OSError:
        return None


def inside_releases(path, state_dir) -> bool:
    """Whether ``path`` is a file under ``<state_dir>/releases/`` (symlinks resolved on both sides)."""
    if not path:
        return False
    root = os.path.realpath(Path(state_dir) / RELEASES_DIR)
    target = os.path.realpath(path)
    return os.path.commonpath([root, target]) == root and target != root


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def rollback_refusal(trial: dict, state: dict, state_dir) -> str | None:
    """None when the trial's ``from_path`` may be started in its place; else why not (English). Like the
    active release: a file under releases/, or the base binary the agent recorded when it last started as
    that (upgrade.json ``base``); and its SHA-256 when the hand-over recorded one."""
    path = trial.get("from_path")
    base = (state.get("base") or {}).get("path")
    is_base = bool(path and base) and os.path.realpath(path) == os.path.realpath(base)
    if not (inside_releases(path, state_dir) or is_base):
        return f"{path} is neither under {Path(state_dir) / RELEASES_DIR} nor the recorded base binary {base}"
    if trial.get("from_sha256"):
        try:
            actual = file_sha256(path)
        except OSError as exc:
            actual = f"unreadable ({exc})"
        if actual != trial["from_sha256"]:
            return f"{path}: sha256 {actual}, recorded {trial['from_sha256']}"
    return None


def at_start(identity, state_dir, now: float, boot: str | None = None) -> Decision:
    """The decision for this start, with upgrade.json written first when it changes. A pip install and an
    unreadable state run as they are (the manager reports the latter). ``boot``: default this boot's."""
    from agent.upgrade import upgrade_path

    if not identity.frozen:
        return Decision(RUN, st.empty(), why="not a self-contained build")
    path = upgrade_path(state_dir)
    try:
        state = st.load(path)
    except st.StateUnreadable as exc:
        log.error("upgrade_state_unreadable error=%s", exc)
        return Decision(RUN, st.empty(), why="upgrade state unreadable")
    try:
        decision = decide(state, identity.version, identity.path, now, boot or boot_identity(),
                          base=not inside_releases(identity.path, state_dir))
        refused = _refusal(decision, state, state_dir)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a hand-edited file: never a crash at start
        log.error("upgrade_state_unreadable file=%s error=%r", path, exc)
        return Decision(RUN, st.empty(), why="upgrade state unreadable")
    reason = st.DIGEST_MISMATCH
    if not refused and decision.action in (ROLLBACK, EXEC_ACTIVE, EXEC_TRIAL):
        from agent.statedir import unsafe_to_start

        refused = unsafe_to_start(decision.path, state_dir)  # someone else could have written it: not run
        reason = st.UNSAFE_FILE
    if refused:
        log.error("upgrade_path_refused action=%s path=%s detail=%s", decision.action, decision.path, refused)
        version = {EXEC_ACTIVE: (state.get("active") or {}).get("version"),
                   EXEC_TRIAL: (state.get("trial") or {}).get("version"),
                   ROLLBACK: (state.get("trial") or {}).get("from_version")}[decision.action]
        after = decision.state
        if decision.action == EXEC_TRIAL:  # the trial cannot go on: recorded as failed, not tried at every start
            after = st.with_failure({**after, "trial": None}, after["trial"]["version"],
                                    after["trial"].get("sha256") or "", reason, refused, now)
        decision = Decision(RUN, after, why="the recorded binary was refused",
                            problem={"reason": reason, "version": version, "detail": refused})
    if decision.state is not state:
        try:
            st.save(path, decision.state)
        except OSError as exc:  # nothing can be recorded, so nothing is changed: this binary runs as it is
            log.error("upgrade_state_not_saved file=%s error=%s", path, exc)
            return Decision(RUN, state, why="upgrade state not writable")
    log.info("upgrade_launch action=%s version=%s why=%s", decision.action, identity.version, decision.why)
    return decision


def _refusal(decision: Decision, state: dict, state_dir) -> str | None:
    """Why the binary ``decision`` would start is refused (None: it may start). Only a file the agent itself
    downloaded and verified, or its recorded base binary, is ever started: a path elsewhere in a
    hand-written upgrade.json (someone at the PC naming their own program, run as SYSTEM/root) runs nothing."""
    if decision.action == ROLLBACK:
        return rollback_refusal(state["trial"], state, state_dir)
    if decision.action not in (EXEC_ACTIVE, EXEC_TRIAL):
        return None
    if not inside_releases(decision.path, state_dir):
        return f"{decision.path} is not under {Path(state_dir) / RELEASES_DIR}"
    try:
        actual = file_sha256(decision.path)
    except OSError as exc:
        actual = f"unreadable ({exc})"
    if actual != decision.sha256:
        log.error("upgrade_active_mismatch path=%s expected=%s actual=%s", decision.path, decision.sha256, actual)
        return f"{decision.path}: sha256 {actual}, recorded {decision.sha256}"
    return None
