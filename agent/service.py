"""The agent as a long-running service: scheduler + durable outbox + sender, and `status`.

Used by `pointwatch-agent run` (systemd, a terminal) and by the Windows service (agent/winservice.py),
which share :class:`Agent`: start, wait for a stop request, finish the running checks, flush, exit.

Test-only knob (documented in docs/en/operations.md): ``POINTWATCH_AGENT_TEST_SPEEDUP=N`` divides every interval,
backoff and drain pause (and the self-upgrade's watchdog deadline) by N, so tests see many cycles in seconds. ``POINTWATCH_AGENT_OUTBOX_MAX`` sets
the outbox bound (default: about 7 days of reports at the configured intervals).
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import signal
import threading
import time
from datetime import datetime
from pathlib import Path

from agent import transport
from agent.enrol import State
from agent.outbox import Outbox, read_status

log = logging.getLogger("pointwatch.agent")

OUTBOX_FILE = "outbox.sqlite3"
OUTBOX_DAYS = 7
LOG_MAX_BYTES = 2 * 1024 * 1024
LOG_BACKUPS = 5
TRIM_INTERVAL = 60.0  # seconds between malloc trims: once per network cycle at the standard interval
# How long a stop waits for the running checks (POINTWATCH_AGENT_TEST_SPEEDUP divides it). Below the 30 s the
# Windows service tells the SCM a stop takes; a check stuck for longer is left behind (see _stop_checks).
STOP_WAIT_S = 20.0


def speedup() -> float:
    try:
        return max(1.0, float(os.environ.get("POINTWATCH_AGENT_TEST_SPEEDUP", "1")))
    except ValueError:
        return 1.0


def outbox_max(cfg) -> int:
    env = os.environ.get("POINTWATCH_AGENT_OUTBOX_MAX")
    if env and env.isdigit():
        return int(env)
    per_day = sum(86400.0 / cfg.intervals[j] for j in cfg.intervals)
    return int(per_day * OUTBOX_DAYS)


class _QuietRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A full or read-only log disk must not spam tracebacks to stderr on every line; stderr still logs."""

    failed = False

    def handleError(self, record):  # noqa: N802 (logging's name)
        if not self.failed:  # said once; the outbox result tells the collector about the disk
            self.failed = True
            logging.getLogger("pointwatch.agent").warning("log_file_unwritable file=%s", self.baseFilename)


def setup_logging(cfg, to_stderr: bool = True) -> None:
    fmt = logging.Formatter(f"%(asctime)s %(levelname)s point={cfg.point.code} %(name)s %(message)s")
    root = logging.getLogger()
    root.setLevel(cfg.log_level)
    for h in list(root.handlers):
        root.removeHandler(h)
    if to_stderr:
        h = logging.StreamHandler()
        h.setFormatter(fmt)
        root.addHandler(h)
    # systemd's LogsDirectory= sets LOGS_DIRECTORY; otherwise logs live beside the state.
    log_dir = Path(os.environ.get("LOGS_DIRECTORY") or Path(cfg.state_dir) / "logs")
    try:
        if not os.environ.get("LOGS_DIRECTORY"):
            Path(cfg.state_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        log_dir.mkdir(parents=True, exist_ok=True)
        fh = _QuietRotatingFileHandler(log_dir / "agent.log", maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS,
                                       encoding="utf-8", delay=True)
        fh.setFormatter(fmt)
        root.addHandler(fh)
    except OSError as exc:
        log.warning("log_file_disabled dir=%s error=%s", log_dir, exc)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def watched_sender(sender_class, on_send_failed):
    """``sender_class`` telling ``on_send_failed`` of every send that raised transport.SendError, before the
    sender handles it as it always has: the upgrade trial's watchdog tells a line that was down from a
    collector that answered (agent/upgrade/manager.py), with agent/sender.py as it is."""

    class WatchedSender(sender_class):
        def _send_error(self, exc, batch):
            on_send_failed(exc)
            return super()._send_error(exc, batch)

    return WatchedSender


class Agent:
    def __init__(self, cfg, platform=None, identity=None, launch=None):
        from agent.checks import registry
        from agent.policyfetch import PolicyFetcher, PolicyKeeper
        from agent.scheduler import JobRunner
        from agent.sender import Sender

        if platform is None:
            from agent.platform import current

            platform = current()
        self.cfg = cfg
        self.speedup = speedup()
        self.stop_event = threading.Event()
        self.state = State(cfg)
        try:
            self.state.ensure_dir()
        except OSError as exc:
            log.error("state_dir_unusable dir=%s error=%s", self.state.dir, exc)
        self.outbox = Outbox(self.state.dir / OUTBOX_FILE, outbox_max(cfg))
        if cfg.collector.insecure_skip_verify:
            log.warning("tls_verification_disabled by=collector.insecure_skip_verify")
        ctx = None
        if cfg.collector.url and cfg.collector.url.startswith("https"):
            ctx = transport.ssl_context(cfg.collector.ca_bundle, cfg.collector.insecure_skip_verify)
        # Self-upgrade (agent/upgrade/): follows the policy's agent: section; `launch` is this start's decision.
        from agent.upgrade import own_identity
        from agent.upgrade.manager import UpgradeManager

        self.handover: str | None = None  # the binary to become once run() has stopped everything cleanly
        self.checks_left_running = False  # a stop gave up waiting for a stuck check (_stop_checks)
        self.upgrade = UpgradeManager(None, self.state, identity or own_identity(), ctx, self.speedup,
                                      on_handover=self._hand_over, launch=launch)
        self.sender = watched_sender(Sender, self.upgrade.on_send_failed)(
            self.outbox, cfg.collector.url, self.state.token, self.state.agent_id, cfg.collector.timeout, ctx,
            self.speedup, on_ack=self.upgrade.on_ack)
        from agent import metrics_endpoint

        # Off unless `metrics: {listen: host:port}` is configured, for sites that pull from the agent too.
        self.metrics = metrics_endpoint.start(cfg)
        # The signed policy: the cached one (verified again) now, a fetch at the start of run(), then every
        # collector.policy_refresh; the jobs take the config of the moment at each run.
        self.sched = None
        self.policy = PolicyKeeper(cfg, self.state, on_change=self._policy_changed)
        self.policy.load_cache()
        self.upgrade.keeper = self.policy
        self.fetcher = PolicyFetcher(self.policy, self.state.token, ctx, self.speedup)
        self.runner = JobRunner(cfg, platform, self.outbox, self.state.agent_id, on_report=self.sender.poke,
                                on_results=self.metrics.update if self.metrics else None, policy=self.policy,
                                upgrade=self.upgrade)
        self.jobs = tuple(registry.JOBS)

    def _hand_over(self, path: str) -> None:
        self.handover = path
        self.stop()

    def _policy_changed(self, old, new) -> None:
        from agent.scheduler import reschedule

        if self.sched is not None:
            reschedule(self.sched, old.intervals, new.intervals, self.jobs, self.speedup)

    def run(self) -> int:
        from agent.scheduler import make_scheduler

        if not self.cfg.collector.url:
            log.warning("no_collector_url reports_stay_in_outbox=true")
        if self.state.token() is None:
            log.warning("not_enrolled hint=run 'pointwatch-agent enroll' reports_stay_in_outbox=true")
        from agent import malloc

        malloc.pin_thresholds()  # before the threads start allocating (agent/malloc.py says why)
        self.sender.start()  # what waits in the outbox goes out meanwhile
        try:
            self.fetcher.fetch_once()  # before the first checks: a new policy applies from the first run
        except Exception:  # the policy in force (cached or local) runs; the fetcher thread tries again
            log.exception("policy_fetch_crashed")
        current = self.policy.current()
        sched = make_scheduler(self.runner, current.intervals, self.jobs, self.speedup)
        log.info("agent_started collector=%s intervals=%s outbox_depth=%d speedup=%s policy=%s",
                 self.cfg.collector.url, {j: current.intervals[j] for j in self.jobs}, self.outbox.depth(),
                 self.speedup, current.policy_digest or "local")
        sched.start()
        self.sched = sched
        self.fetcher.start()
        self.upgrade.start()
        trim_every = max(1.0, TRIM_INTERVAL / self.speedup)
        next_trim = time.monotonic() + trim_every
        try:
            while not self.stop_event.wait(1.0):
                if time.monotonic() >= next_trim:
                    malloc.trim()  # what the cycles since the last trim freed goes back to the OS
                    next_trim = time.monotonic() + trim_every
        finally:
            t0 = time.monotonic()
            # Running checks finish and land in the outbox (wait=True); nothing new starts.
            self.upgrade.stop()
            self.fetcher.stop()
            self._stop_checks(sched)
            self.sender.stop()
            self.outbox.close()
            if self.metrics:
                self.metrics.stop()
            log.info("agent_stopped shutdown_s=%.1f", time.monotonic() - t0)
        return 0

    def _stop_checks(self, sched) -> None:
        """Running checks finish and land in the outbox, for at most STOP_WAIT_S: a check stuck for good (a
        driver call that never returns) must not keep a trial's watchdog from handing back to the previous
        binary, nor a hand-over from happening at all. What is left behind is harmless to the outbox: a
        check that returns later writes one whole report in its own transaction (the outbox reopens), and an
        exec in the middle of one is a crash to SQLite, which the WAL rolls back at the next open."""
        waiter = threading.Thread(target=sched.shutdown, kwargs={"wait": True}, name="stop-checks", daemon=True)
        waiter.start()
        waiter.join(STOP_WAIT_S / self.speedup)
        if waiter.is_alive():
            self.checks_left_running = True
            log.error("agent_stop_checks_unfinished wait_s=%.1f", STOP_WAIT_S / self.speedup)

    def stop(self) -> None:
        self.stop_event.set()


def run_forever(cfg) -> int:
    setup_logging(cfg)
    # A stop asked for while the agent is still being built counts too (systemd may stop a slow start).
    started: list[Agent] = []
    stop_asked = threading.Event()

    def on_stop(signum, _frame):
        log.info("stop_requested signal=%d", signum)
        stop_asked.set()
        for agent in started:
            agent.stop()

    for sig in (signal.SIGTERM, signal.SIGINT, *([signal.SIGBREAK] if hasattr(signal, "SIGBREAK") else [])):
        signal.signal(sig, on_stop)  # SIGBREAK: Ctrl-Break in a Windows console
    from agent.statedir import protect
    from agent.upgrade import own_identity
    from agent.upgrade.handover import replace_process
    from agent.upgrade.launch import EXECS, at_start

    protect(cfg.state_dir)  # before the launch decision: a directory an older version made is fixed first
    identity = own_identity()
    launch = at_start(identity, cfg.state_dir, time.time())  # the launch decision: before anything starts
    if launch.action in EXECS and not stop_asked.is_set():
        try:
            replace_process(launch.path)
        except OSError as exc:  # this binary runs after all; the reports say the upgrade state
            log.error("upgrade_exec_failed path=%s error=%s", launch.path, exc)
    agent = Agent(cfg, identity=identity, launch=launch)
    started.append(agent)
    if stop_asked.is_set():
        agent.stop()
    code = agent.run()
    if agent.handover:  # stopped cleanly (checks finished, outbox closed): become the other binary
        try:
            replace_process(agent.handover)
        except OSError as exc:
            log.error("upgrade_exec_failed path=%s error=%s", agent.handover, exc)
            agent.upgrade.handover_failed(agent.handover, exc)
            code = 1  # systemd starts the agent again; its launch decision sees no open trial
    if agent.checks_left_running:  # the interpreter's exit would wait for the stuck check thread for ever
        logging.shutdown()
        os._exit(code)
    return code


def enroll(cfg, collector_url: str | None, code: str, accept_release_keys: set[str] | None = None) -> int:
    from agent.enrol import enroll as do_enroll

    setup_logging(cfg, to_stderr=False)
    return do_enroll(cfg, collector_url, code, accept_release_keys=accept_release_keys)


def collect_status(cfg) -> dict:
    state = State(cfg)
    info: dict = {"point": cfg.point.code, "state_dir": str(state.dir), "collector": cfg.collector.url,
                  "enrolled": state.token() is not None, "policy_keys": len(state.policy_keys())}
    from agent.policyfetch import PolicyKeeper

    keeper = PolicyKeeper(cfg, state)
    keeper.load_cache()  # verified again, as at every start
    info["policy"] = keeper.current().policy_digest or ("refused" if keeper.refused else "local")
    from agent.upgrade import own_identity
    from agent.upgrade.report import status_info

    info["upgrade"] = status_info(state.dir, own_identity(), keeper.current().upgrade.version)
    try:
        info.update(read_status(state.dir / OUTBOX_FILE))
    except Exception as exc:  # status is read by a person at the PC: show the problem, don't crash
        info.update(outbox="unreadable", outbox_error=str(exc))
    return info


def status(cfg, as_json: bool) -> int:
    info = collect_status(cfg)
    if as_json:
        print(json.dumps(info, ensure_ascii=False, indent=2))
    else:
        print(format_status(info))
    return 0 if info.get("outbox") == "ok" else 1


def _ts(value) -> str:
    return datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M:%S") if value else "从未"


def format_status(info: dict) -> str:
    lines = [f"服务点 {info['point']}  采集端 {info.get('collector') or '未配置'}  "
             f"{'已注册' if info['enrolled'] else '未注册'}",
             f"状态目录 {info['state_dir']}",
             "检查策略：" + {"local": "尚无采集端下发的策略，按本机配置文件检查",
                            "refused": "本地缓存的策略校验失败，已拒绝（代理会重新获取）"}.get(
                 info["policy"], f"采集端下发的已校验策略 {info['policy']}")]
    if "upgrade" in info:
        from agent.upgrade.report import status_line

        lines.append(status_line(info["upgrade"]))
    if info.get("outbox") != "ok":
        lines.append(f"报告缓存：{'尚未创建（代理还未运行过）' if info.get('outbox') == 'missing' else info.get('outbox_error')}")
        return "\n".join(lines)
    age = info["oldest_age_s"]
    lines.append(f"报告缓存：待发送 {info['depth']} 份" + (f"，最早一份已等待 {age / 60:.1f} 分钟" if age else "")
                 + f"，累计丢弃 {info['dropped_total']} 份，最新序号 {info['last_seq']}")
    lines.append(f"最近一次确认：{_ts(info['last_ack_at'])}" +
                 (f"（{info['last_ack_count']} 份）" if info.get("last_ack_count") else ""))
    lines.append(f"最近错误：{info['last_error'] or '无'}" +
                 (f"（{_ts(info['last_error_at'])}）" if info.get("last_error") else ""))
    for job, j in sorted(info["jobs"].items()):
        s = j.get("summary", {})
        lines.append(f"任务 {job}: 最近运行 {_ts(j.get('last_start'))}，耗时 {j.get('duration_s')} 秒，"
                     f"正常 {s.get('ok', 0)} 警告 {s.get('warn', 0)} 不合格 {s.get('fail', 0)} 错误 {s.get('error', 0)}")
    return "\n".join(lines)
