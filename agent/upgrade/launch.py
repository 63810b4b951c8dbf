"""The launch decision: what a starting ``run`` does, from upgrade.json, its own version and the time.

:func:`decide` is pure (docs/en/operations.md has its table; tests/test_agent_upgrade_launch.py checks it):

- the trial version starting, launches < 1, before its deadline -> run it as the trial (launches += 1);
- the trial version starting again without a commit (it crashed or was restarted), or after the deadline ->
  roll back: the failure recorded, the previous binary exec'd;
- another binary starting while a trial is open -> the trial's process ended without a commit: the failure is
  recorded, then as below;
- a binary other than the active one starting (the base binary systemd starts after a reboot) -> exec the
  active one, after its SHA-256 is checked again (a mismatch: this binary runs, and says so);
- otherwise: run.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from agent.upgrade import RELEASES_DIR
from agent.upgrade import state as st

log = logging.getLogger("pointwatch.upgrade")

RUN, TRIAL, ROLLBACK, EXEC_ACTIVE = "run", "trial", "rollback", "exec_active"


@dataclass(frozen=True)
class Decision:
    action: str
    state: dict                 # what upgrade.json says from now on (the same object: nothing to write)
    path: str | None = None     # the binary to exec (ROLLBACK, EXEC_ACTIVE)
    sha256: str | None = None   # what that binary must hash to (EXEC_ACTIVE)
    why: str = ""
    problem: dict = field(default_factory=dict)  # a failure found at start, for the first reports


def rolled_back(state: dict, trial: dict, detail: str, now: float) -> dict:
    out = st.with_failure(state, trial["version"], trial.get("sha256") or "", st.ROLLED_BACK, detail, now)
    return {**out, "trial": None, "last": {"event": "rolled_back", "version": trial["version"], "at": now}}


def decide(state: dict, own_version: str, own_path: str, now: float) -> Decision:
    trial = state.get("trial")
    if trial:
        if trial.get("version") == own_version:
            if now >= float(trial.get("deadline") or 0):
                detail = "the trial started after its deadline without an acknowledged report"
                return Decision(ROLLBACK, rolled_back(state, trial, detail, now), trial.get("from_path"), why=detail)
            if int(trial.get("launches") or 0) < 1:
                return Decision(TRIAL, {**state, "trial": {**trial, "launches": int(trial.get("launches") or 0) + 1}},
                                why="first start of the trial")
            detail = "the trial started again before a report was acknowledged (it crashed or was restarted)"
            return Decision(ROLLBACK, rolled_back(state, trial, detail, now), trial.get("from_path"), why=detail)
        detail = f"version {own_version} started while the trial of {trial.get('version')} was not committed"
        state = rolled_back(state, trial, detail, now)
        log.warning("upgrade_trial_abandoned trial=%s started=%s", trial.get("version"), own_version)
    active = state.get("active")
    if active and active.get("version") != own_version and active.get("path") != own_path:
        return Decision(EXEC_ACTIVE, state, active.get("path"), active.get("sha256"),
                        why=f"the active release is {active.get('version')}")
    return Decision(RUN, state, why="nothing to change")


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


def at_start(identity, state_dir, now: float) -> Decision:
    """The decision for this start, with upgrade.json written first when it changes. A pip install and an
    unreadable state run as they are (the manager reports the latter)."""
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
        decision = decide(state, identity.version, identity.path, now)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a hand-edited file: never a crash at start
        log.error("upgrade_state_unreadable file=%s error=%r", path, exc)
        return Decision(RUN, st.empty(), why="upgrade state unreadable")
    if decision.state is not state:
        try:
            st.save(path, decision.state)
        except OSError as exc:  # nothing can be recorded, so nothing is changed: this binary runs as it is
            log.error("upgrade_state_not_saved file=%s error=%s", path, exc)
            return Decision(RUN, state, why="upgrade state not writable")
    if decision.action == EXEC_ACTIVE and not inside_releases(decision.path, state_dir):
        # Only a file the agent itself downloaded and verified is ever started: a path elsewhere in a
        # hand-written upgrade.json (someone at the PC naming their own program) runs nothing.
        log.error("upgrade_path_refused path=%s", decision.path)
        problem = {"reason": st.DIGEST_MISMATCH, "version": (state.get("active") or {}).get("version"),
                   "detail": f"{decision.path} is not under {Path(state_dir) / RELEASES_DIR}"}
        return Decision(RUN, decision.state, why="the recorded release is outside releases/", problem=problem)
    if decision.action == EXEC_ACTIVE:
        try:
            actual = file_sha256(decision.path)
        except OSError as exc:
            actual = f"unreadable ({exc})"
        if actual != decision.sha256:
            log.error("upgrade_active_mismatch path=%s expected=%s actual=%s", decision.path, decision.sha256, actual)
            problem = {"reason": st.DIGEST_MISMATCH, "version": state["active"].get("version"),
                       "detail": f"{decision.path}: sha256 {actual}, recorded {decision.sha256}"}
            return Decision(RUN, decision.state, why="the active release's file changed", problem=problem)
    if decision.action in (ROLLBACK, EXEC_ACTIVE):
        from agent.statedir import unsafe_to_start

        refused = unsafe_to_start(decision.path, state_dir)  # someone else could have written it: not run
        if refused:
            version = ((state.get("active") or {}).get("version") if decision.action == EXEC_ACTIVE
                       else (state.get("trial") or {}).get("from_version"))
            problem = {"reason": st.UNSAFE_FILE, "version": version, "detail": refused}
            return Decision(RUN, decision.state, why="the release file is not the agent's alone", problem=problem)
    log.info("upgrade_launch action=%s version=%s why=%s", decision.action, identity.version, decision.why)
    return decision
