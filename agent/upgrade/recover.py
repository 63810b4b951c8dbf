"""The Windows service's trial supervised by the known-good binary: what ``<A.exe> service-recover`` does.

During a trial the service's failure actions do not restart the service but run ``"<A.exe>" service-recover``
(windows.py ``supervise_trial``), A being the binary that handed over; the SCM runs it, as the service's own
account, each time the service stops as failed. Without it a B that crashes before its launch decision (a
missing DLL, a bootloader that cannot unpack) would be restarted by the SCM for ever and never roll back: the
launch decision and the watchdog both live in B.

:func:`after_failure` is pure (tests/test_agent_upgrade_launch.py checks it; windows.py acts on it):

- no trial open (committed, or B's own watchdog rolled back and pointed the service at A) -> the trial is
  over: the plain restart failure actions are put back and the service is started as it is;
- a trial open that never started (``launches`` 0) and that the supervisor did not start yet -> this is
  A's own hand-over stop: the service (pointed at B) is started, the start counted (``service_starts``);
- any other trial open (B started and stopped as failed, before or after its launch decision) -> roll
  back: the failure recorded, the service pointed at this binary (never at a path read from upgrade.json),
  the restart failure actions put back, the service started.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.upgrade.launch import rolled_back


@dataclass(frozen=True)
class Recovery:
    state: dict               # upgrade.json from now on (the same object: nothing to write)
    point_at: str | None      # the exe the service runs from now on (None: as it is)
    supervise: bool           # the trial goes on: the failure actions stay on service-recover
    why: str


def after_failure(state: dict, own_path: str, now: float) -> Recovery:
    trial = state.get("trial")
    if not trial:
        return Recovery(state, None, False, "no trial is open: the service restarts as it is")
    launches, starts = int(trial.get("launches") or 0), int(trial.get("service_starts") or 0)
    if launches < 1 and starts < 1:
        return Recovery({**state, "trial": {**trial, "service_starts": starts + 1}}, None, True,
                        f"the hand-over's stop: the service starts the trial of {trial.get('version')}")
    if launches < 1:
        detail = "the trial's service stopped as failed before its launch decision (it crashed at start)"
    else:
        detail = "the trial's service stopped as failed before a report was acknowledged (it crashed)"
    return Recovery(rolled_back(state, trial, detail, now), own_path, False, detail)


def unsaved(step: Recovery, own_path: str) -> Recovery:
    """The step to take instead of ``step`` when its state could not be saved."""
    if not step.supervise:
        return step  # a rollback or the end of a trial: the same, only not recorded (A's start records it)
    return Recovery(step.state, own_path, False,
                    "upgrade.json could not be written, so the trial's start cannot be counted: back to this binary")
