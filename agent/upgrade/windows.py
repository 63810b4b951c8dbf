"""The Windows service's hand-over: point the service at another exe; the SCM restarts into it.

Windows-only (pywin32): imported only by agent/winservice.py, on Windows. The service then stops as failed
(agent/winservice.py ``StoppedWithError``: SERVICE_STOPPED with an error code), which the failure actions set
at install (``_set_failure_actions``: restart after 10 s, also after a non-crash failure) turn into a start of
the new exe. During a trial the failure actions run the known-good exe's ``service-recover`` instead
(recover.py says why and what it does). Wine's service manager has no failure actions;
tests/test_windows_upgrade.py says what that leaves unproven.
"""

from __future__ import annotations

import logging

import pywintypes  # pywin32
import win32service

log = logging.getLogger("pointwatch.upgrade")


def service_command(exe: str) -> str:
    """The service's command line for ``exe`` (agent/winservice.py ``_host_command`` of a frozen build)."""
    return f'"{exe}" service-host'


def point_service_at(exe: str, service_name: str) -> None:
    scm = win32service.OpenSCManager(None, None, win32service.SC_MANAGER_ALL_ACCESS)
    try:
        svc = win32service.OpenService(scm, service_name, win32service.SERVICE_CHANGE_CONFIG)
        try:
            no_change = win32service.SERVICE_NO_CHANGE
            win32service.ChangeServiceConfig(svc, no_change, no_change, no_change, service_command(exe), None, 0,
                                             None, None, None, None)
        finally:
            win32service.CloseServiceHandle(svc)
    finally:
        win32service.CloseServiceHandle(scm)
    log.info("upgrade_service_binary_set service=%s exe=%s", service_name, exe)


RECOVER = "service-recover"  # the hidden subcommand the failure actions run during a trial (recover.py)
FAILURE_DELAY_MS = 10000
FAILURE_RESET_S = 86400


def set_failure_actions(service_name: str, command: str | None = None) -> None:
    """The service's failure actions: restart 10 s after each failure (the count reset after a day), or, with
    ``command``, run it instead (a trial's supervisor). Every action the same: the SCM's failure count
    (which a hand-over's own stop adds to) never picks another one."""
    action = (win32service.SC_ACTION_RUN_COMMAND if command else win32service.SC_ACTION_RESTART, FAILURE_DELAY_MS)
    scm = win32service.OpenSCManager(None, None, win32service.SC_MANAGER_ALL_ACCESS)
    try:
        svc = win32service.OpenService(scm, service_name, win32service.SERVICE_ALL_ACCESS)
        try:
            win32service.ChangeServiceConfig2(svc, win32service.SERVICE_CONFIG_FAILURE_ACTIONS, {
                "ResetPeriod": FAILURE_RESET_S, "RebootMsg": None, "Command": command or "",  # "": no command
                "Actions": [action] * 3})
        finally:
            win32service.CloseServiceHandle(svc)
    finally:
        win32service.CloseServiceHandle(scm)
    log.info("upgrade_failure_actions service=%s command=%s", service_name, command or "restart")


def supervise_trial(own_exe: str, service_name: str) -> None:
    """Before the service is pointed at a trial: its failures run this (known-good) exe's service-recover."""
    set_failure_actions(service_name, f'"{own_exe}" {RECOVER}')


def start_service(service_name: str) -> None:
    import win32serviceutil

    try:
        win32serviceutil.StartService(service_name)
    except pywintypes.error as exc:
        if exc.winerror != 1056:  # ERROR_SERVICE_ALREADY_RUNNING: someone started it meanwhile
            raise
    log.info("upgrade_service_started service=%s", service_name)


def recover_service(service_name: str, state_dir, own_exe: str, now: float) -> int:
    """``<exe> service-recover``, run by the failure actions: recover.py decides, this acts on it. A trial
    whose exe cannot even be started (StartService fails: a damaged file, a process that dies before it
    reaches the dispatcher) has failed too: nothing else would ever start the service again."""
    from agent.upgrade import state as st
    from agent.upgrade import upgrade_path
    from agent.upgrade.recover import after_failure, unsaved

    path = upgrade_path(state_dir)
    try:
        state = st.load(path)
    except st.StateUnreadable as exc:  # nothing to decide from: the service restarts as it is
        log.error("upgrade_state_unreadable error=%s", exc)
        state = st.empty()
    while True:
        step = after_failure(state, own_exe, now)
        log.warning("upgrade_service_recover service=%s point_at=%s supervise=%s why=%s", service_name,
                    step.point_at, step.supervise, step.why)
        if step.state is not state:
            try:
                st.save(path, step.state)
            except OSError as exc:
                log.error("upgrade_state_not_saved file=%s error=%s", path, exc)
                step = unsaved(step, own_exe)
        # Each step on its own: whatever fails, the service is still started at the end.
        if step.point_at:
            _logged(point_service_at, step.point_at, service_name)
        if not step.supervise:
            _logged(set_failure_actions, service_name)
        try:
            start_service(service_name)
            return 0
        except pywintypes.error as exc:
            if not step.supervise:
                raise
            log.error("upgrade_trial_start_failed service=%s error=%s", service_name, exc.strerror)
            state = step.state  # the trial counted as started: the next decision rolls it back


def _logged(action, *args) -> None:
    try:
        action(*args)
    except pywintypes.error as exc:
        log.error("upgrade_service_recover_step_failed step=%s error=%s", action.__name__, exc.strerror)
