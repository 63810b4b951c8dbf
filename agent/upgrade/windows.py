"""The Windows service's hand-over: point the service at another exe; the SCM restarts into it.

Windows-only (pywin32): imported only by agent/winservice.py, on Windows. The service then stops as failed
(agent/winservice.py ``StoppedWithError``: SERVICE_STOPPED with an error code), which the failure actions set
at install (``_set_failure_actions``: restart after 10 s, also after a non-crash failure) turn into a start of
the new exe. Wine's service manager has no failure actions; tests/test_windows_upgrade.py says what that leaves
unproven.
"""

from __future__ import annotations

import logging

import win32service  # pywin32

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
