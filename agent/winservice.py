"""The agent as a real Windows service (pywin32). Windows-only: imported only by `cli.cmd_service` on Windows.

    pointwatch-agent service install --config C:\\ProgramData\\pointwatch-agent\\agent.yaml
    pointwatch-agent service start | stop | remove

The service control manager starts ``<exe> service-host`` (the PyInstaller exe, or python.exe running
``-m agent.cli service-host`` for a pip install): that hands the process to the SCM dispatcher, which
calls :meth:`PointwatchAgentService.SvcDoRun`. The config path is stored in the service's registry key
(``HKLM\\SYSTEM\\CurrentControlSet\\Services\\pointwatch-agent\\Parameters``), so the command line stays
fixed. The service runs as LocalSystem, which ICMP raw sockets need; it restarts itself on failure.
"""

from __future__ import annotations

import logging
import sys

import pywintypes  # pywin32
import servicemanager
import win32event
import win32service
import win32serviceutil

SERVICE_NAME = "pointwatch-agent"
log = logging.getLogger("pointwatch.winservice")


class StoppedWithError(Exception):
    """Raised out of SvcRun when the service must stop as failed (a config error, an upgrade's hand-over).

    pywin32 reports its own final SERVICE_STOPPED when SvcRun returns, with exit code 0 whatever SvcDoRun
    reported before (tests/test_windows_upgrade.py saw it under Wine); only an exception out of SvcRun makes
    that status an error, and only an error makes the SCM apply the failure actions (restart the service).
    """


def _host_command() -> tuple[str, str]:
    if getattr(sys, "frozen", False):  # PyInstaller: the exe itself is the host
        return sys.executable, "service-host"
    return sys.executable, "-m agent.cli service-host"


class PointwatchAgentService(win32serviceutil.ServiceFramework):
    _svc_name_ = SERVICE_NAME
    _svc_display_name_ = "pointwatch 医保服务点监测代理"
    _svc_description_ = ("检查专网专机专用、核心网连通和服务点设备，并把报告发送到县级采集端。"
                         "pointwatch service-point agent.")
    _exe_name_, _exe_args_ = _host_command()

    def __init__(self, args):
        super().__init__(args)
        self.stop_handle = win32event.CreateEvent(None, 0, 0, None)
        self.agent = None
        self.failed: str | None = None  # why the service stops as failed (StoppedWithError)

    def SvcStop(self):  # noqa: N802 (pywin32's names)
        # Tell the SCM how long a clean stop may take: running checks finish, the outbox is flushed.
        self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING, waitHint=30000)
        if self.agent is not None:
            self.agent.stop()
        win32event.SetEvent(self.stop_handle)

    SvcShutdown = SvcStop  # the PC shuts down: same clean stop

    def SvcRun(self):  # noqa: N802
        super().SvcRun()
        if self.failed:
            raise StoppedWithError(self.failed)

    def SvcDoRun(self):  # noqa: N802
        from agent import config as config_mod
        from agent.confignode import ConfigError
        from agent.service import Agent, setup_logging

        path = win32serviceutil.GetServiceCustomOption(self._svc_name_, "config")
        servicemanager.LogInfoMsg(f"{SERVICE_NAME} starting with config {path}")
        try:
            cfg = config_mod.load(path)
        except ConfigError as exc:
            servicemanager.LogErrorMsg(f"{SERVICE_NAME}: 配置错误 {exc}")
            self.failed = f"config error: {exc}"  # the failure actions restart it (after a delay)
            return
        setup_logging(cfg, to_stderr=False)  # a service has no console: the rotating file only
        import time

        from agent.statedir import protect
        from agent.upgrade import own_identity
        from agent.upgrade.launch import EXEC_TRIAL, EXECS, at_start

        protect(cfg.state_dir)  # SYSTEM and Administrators only, before anything there is started
        identity = own_identity()
        launch = at_start(identity, cfg.state_dir, time.time())  # the self-upgrade's launch decision
        if launch.action in EXECS:
            return self._restart_into(launch.path, supervisor=identity.path if launch.action == EXEC_TRIAL else None)
        self.agent = Agent(cfg, identity=identity, launch=launch)
        if win32event.WaitForSingleObject(self.stop_handle, 0) == win32event.WAIT_OBJECT_0:
            return
        self.ReportServiceStatus(win32service.SERVICE_RUNNING)
        self.agent.run()
        if self.agent.handover:  # stopped cleanly for an upgrade or a rollback
            trial = self.agent.upgrade.cached.get("trial") or {}
            to_trial = trial.get("path") == self.agent.handover
            return self._restart_into(self.agent.handover, supervisor=identity.path if to_trial else None)
        servicemanager.LogInfoMsg(f"{SERVICE_NAME} stopped")

    def _restart_into(self, exe: str, supervisor: str | None = None) -> None:
        """Point the service at ``exe`` and stop as failed: the failure actions restart the service into it.
        ``supervisor``: ``exe`` is a trial, and this (known-good) exe's service-recover is what the failure
        actions run until the trial is over (agent/upgrade/recover.py)."""
        from agent.upgrade.windows import point_service_at, supervise_trial

        try:
            if supervisor:
                supervise_trial(supervisor, SERVICE_NAME)
            point_service_at(exe, SERVICE_NAME)
        except pywintypes.error as exc:
            servicemanager.LogErrorMsg(f"{SERVICE_NAME}: 无法切换到 {exe}：{exc.strerror}")
        servicemanager.LogInfoMsg(f"{SERVICE_NAME} restarting into {exe}")
        self.failed = f"stopped to restart into {exe}"


def _set_failure_actions() -> None:
    """Restart 10 s after a crash, every time (reset the count after a day): nobody is there to do it."""
    scm = win32service.OpenSCManager(None, None, win32service.SC_MANAGER_ALL_ACCESS)
    try:
        svc = win32service.OpenService(scm, SERVICE_NAME, win32service.SERVICE_ALL_ACCESS)
        try:
            restart = (win32service.SC_ACTION_RESTART, 10000)
            win32service.ChangeServiceConfig2(svc, win32service.SERVICE_CONFIG_FAILURE_ACTIONS, {
                "ResetPeriod": 86400, "RebootMsg": None, "Command": None, "Actions": [restart] * 3})
            try:
                # Also after a non-zero exit (a config error), not only a crash. Vista and later have it;
                # Wine's service manager answers ERROR_INVALID_LEVEL, which made the whole install report
                # failure although the service and its crash restarts were in place.
                win32service.ChangeServiceConfig2(svc, win32service.SERVICE_CONFIG_FAILURE_ACTIONS_FLAG, True)
            except pywintypes.error as exc:
                print(f"警告：未能设置“非零退出也重启”（SERVICE_CONFIG_FAILURE_ACTIONS_FLAG）：{exc.strerror}")
        finally:
            win32service.CloseServiceHandle(svc)
    finally:
        win32service.CloseServiceHandle(scm)


def handle(action: str, config_path: str | None, startup: str) -> int:
    """install/update/remove/start/stop/restart through pywin32's HandleCommandLine."""
    import os

    if action in ("install", "update"):
        if not config_path:
            print("请用 --config 指定配置文件，例如 C:\\ProgramData\\pointwatch-agent\\agent.yaml")
            return 2
        config_path = os.path.abspath(config_path)
        from agent import config as config_mod
        from agent.confignode import ConfigError

        try:
            cfg = config_mod.load(config_path)  # refuse to install a service that would fail at once
        except ConfigError as exc:
            print(f"配置错误 (config error): {exc}")
            return 2
        from agent.enrol import State

        state = State(cfg)
        try:
            state.ensure_dir()  # the token and releases\ must be SYSTEM's and the administrators' alone
        except OSError as exc:
            print(f"无法创建状态目录 {state.dir}：{exc}")
            return 1
        if state.acl_problem:
            print(f"无法将状态目录 {state.dir} 设为仅系统和管理员可访问（{state.acl_problem}）；请以管理员身份运行")
            return 1
    argv = [sys.argv[0]]
    if action in ("install", "update"):
        argv += ["--startup", startup]
    argv.append(action)

    def store_options(_opts):
        win32serviceutil.SetServiceCustomOption(SERVICE_NAME, "config", config_path)
        _set_failure_actions()

    err = win32serviceutil.HandleCommandLine(
        PointwatchAgentService, serviceClassString="agent.winservice.PointwatchAgentService", argv=argv,
        customOptionHandler=store_options if action in ("install", "update") else None)
    return 0 if not err else 1


def recover() -> int:
    """``<exe> service-recover``: what the failure actions run during a trial (agent/upgrade/recover.py)."""
    import time

    from agent import config as config_mod
    from agent.confignode import ConfigError
    from agent.service import setup_logging
    from agent.upgrade import own_identity
    from agent.upgrade.windows import recover_service, start_service

    path = win32serviceutil.GetServiceCustomOption(SERVICE_NAME, "config")
    try:
        cfg = config_mod.load(path)
    except ConfigError as exc:  # the service itself will say so; it still has to be started
        servicemanager.LogErrorMsg(f"{SERVICE_NAME}: 配置错误 {exc}")
        start_service(SERVICE_NAME)
        return 2
    setup_logging(cfg, to_stderr=False)
    return recover_service(SERVICE_NAME, cfg.state_dir, own_identity().path, time.time())


def host() -> int:
    """Entry point of the process the SCM starts: hand it to the service dispatcher."""
    servicemanager.Initialize()
    servicemanager.PrepareToHostSingle(PointwatchAgentService)
    servicemanager.StartServiceCtrlDispatcher()
    return 0
