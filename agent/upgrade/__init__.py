"""The agent upgrading itself from its collector: signed releases, a trial run, automatic rollback.

The flow (docs/en/operations.md, "Self-upgrade", says it for operators):

1. The signed policy's ``agent:`` section names a version (agent/config.py ``UpgradePolicy``). Inside its window
   (local time) :class:`agent.upgrade.manager.UpgradeManager` fetches the release's manifest, verifies it under
   the release keys pinned at enrolment (manifest.py), downloads the file resumably and bandwidth-capped
   (download.py) into ``<state_dir>/releases/<version>/``, verifies size and SHA-256 and checks that the new
   binary starts (``--version``, handover.py).
2. It records a *trial* in ``<state_dir>/upgrade.json`` (state.py), stops the agent cleanly and hands the
   process over to the new binary (Linux: exec; the Windows service: the SCM restarts into the new exe).
3. Every start goes through one launch decision (launch.py, a pure function of upgrade.json, the starting
   binary's version, this boot and the time): the trial runs once with a watchdog; its first acknowledged
   report commits it; no acknowledgement within the time the trial ran (never the wall clock), or a second
   start of an uncommitted trial in the same boot, rolls back to the previous binary (a reboot gets the trial
   another launch, up to 3). On Windows the previous exe supervises the trial through the service's failure
   actions (recover.py). A failed (version, sha256) is not tried again while the policy names that version.

Standard library only, imported lazily (a pip install never hands over: it has no binary of its own to replace).
This module holds what every part shares: who this process is and where the files are.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

UPGRADE_FILE = "upgrade.json"
RELEASES_DIR = "releases"
WATCHDOG_S = 600.0  # a trial must have a report acknowledged within this (POINTWATCH_AGENT_TEST_SPEEDUP divides)
START_CHECK_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Identity:
    """The running agent: its version, its binary, the release platform it takes, whether it can hand over."""

    version: str
    path: str
    platform: str
    frozen: bool  # a self-contained build (PyInstaller); a pip/venv install cannot replace itself


def own_identity() -> Identity:
    from agent import __version__

    frozen = bool(getattr(sys, "frozen", False))
    if not frozen:
        return Identity(__version__, sys.executable, "wheel", False)
    if sys.platform == "win32":
        return Identity(__version__, os.path.abspath(sys.executable), "windows-amd64", True)
    return Identity(__version__, os.path.abspath(sys.executable), f"linux-{platform.machine()}", True)


def upgrade_path(state_dir) -> Path:
    return Path(state_dir) / UPGRADE_FILE


def release_dir(state_dir, version: str) -> Path:
    return Path(state_dir) / RELEASES_DIR / version
