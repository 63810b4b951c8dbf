"""APScheduler jobs: each check family at its own interval, with jitter, never two runs of one job at once.

A job run builds one report of that job's results and writes it to the outbox; the sender takes it from
there. Host facts (fingerprint, OS) are read at the identity job and cached in between, because on
Windows they cost a WMI query.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from datetime import datetime, timedelta, timezone

from agent.checks import run_probes
from agent.outbox import Note, Outbox
from agent.report import build_report, host_facts, probes_for
from agent.vocabulary import AGENT_OUTBOX, AGENT_POLICY_FETCH, AGENT_UPGRADE
from agent.wire import Result, report_to_dict, summarize, utcnow

log = logging.getLogger("pointwatch.scheduler")

HOST_FACTS_MAX_AGE = 3600.0


def outbox_result(note: Note) -> Result:
    """The agent's own health as a result, so the collector sees drops and storage problems."""
    details = {"depth": note.depth, "oldest_age_s": note.oldest_age_s, "dropped": note.dropped,
               "dropped_total": note.dropped_total}
    if note.problem:
        details.update(problem=note.problem, memory_queue=note.memory_queue)
        status, message = "error", f"本地报告缓存异常：{note.problem}"
    elif note.dropped:
        status, message = "warn", f"本地报告缓存已满，已丢弃最早的 {note.dropped} 份报告（累计 {note.dropped_total} 份）"
    else:
        status, message = "ok", f"本地报告缓存正常，待发送 {note.depth} 份"
    return Result(check=AGENT_OUTBOX, target="本地缓存", status=status, message=message,
                  value=float(note.depth), unit="reports", details=details, observed_at=utcnow())


def own_result(make, check: str) -> Result:
    """The agent's word on itself (policy, upgrade) for a report: whatever goes wrong making it (a state file
    edited by hand, say) is that one result's ``error``, never a report not written (a silent point)."""
    try:
        return make()
    except Exception as exc:
        log.exception("own_result_failed check=%s", check)
        return Result(check=check, target="代理自身", status="error", message=f"代理无法给出该项状态：{exc!r}",
                      details={"problem": repr(exc)}, observed_at=utcnow())


class JobRunner:
    def __init__(self, cfg, platform, outbox: Outbox, agent_id_reader, on_report=None, on_results=None,
                 policy=None, upgrade=None):
        self.cfg, self.platform, self.outbox = cfg, platform, outbox
        self.agent_id_reader, self.on_report = agent_id_reader, on_report
        self.on_results = on_results  # (job, results): the optional local /metrics endpoint
        # agent.policyfetch.PolicyKeeper: the config of the moment (a new policy applies at the next run, its
        # probes built afresh) and its agent.policy_fetch result in every report.
        self.policy = policy
        self.upgrade = upgrade  # agent.upgrade.manager.UpgradeManager: its agent.upgrade result, likewise
        self._host = None
        self._host_at = 0.0
        self._lock = threading.Lock()

    def host(self, refresh: bool):
        with self._lock:
            if refresh or self._host is None or time.monotonic() - self._host_at > HOST_FACTS_MAX_AGE:
                try:
                    self._host, self._host_at = host_facts(self.platform), time.monotonic()
                except Exception as exc:  # facts are best effort; a report without them still counts
                    log.warning("host_facts_failed error=%r", exc)
                    if self._host is None:
                        raise
            return self._host

    def run(self, job: str) -> int:
        started, t0 = time.time(), time.monotonic()
        cfg = self.policy.current() if self.policy else self.cfg  # one config for the whole run and its report
        try:
            probes = probes_for(cfg, self.platform, jobs=[job])
            if not probes:  # nothing configured for this family: no empty report on the wire
                self.outbox.note(**{f"job.{job}": json.dumps({"last_start": started, "results": 0})})
                return 0
            results = run_probes(probes)
            host = self.host(refresh=(job == "identity"))
        except Exception as exc:
            log.exception("job_failed job=%s", job)
            self.outbox.note(last_error=f"检查任务 {job} 运行失败：{exc!r}", last_error_at=time.time())
            return 0
        info = {"last_start": started, "last_end": time.time(), "duration_s": round(time.monotonic() - t0, 3),
                "results": len(results), "summary": summarize(results)}
        agent_id = self.agent_id_reader()

        def build(seq: int, note: Note) -> dict:
            own = [outbox_result(note), *([own_result(self.policy.result, AGENT_POLICY_FETCH)] if self.policy else []),
                   *([own_result(self.upgrade.result, AGENT_UPGRADE)] if self.upgrade else [])]
            report = build_report(cfg, host, [*results, *own], seq, agent_id)
            return report_to_dict(report)

        seq = self.outbox.add(build, job, info)
        if self.on_results:
            self.on_results(job, results)
        log.info("job_done job=%s seq=%d results=%d duration_s=%s", job, seq, len(results), info["duration_s"])
        if self.on_report:
            self.on_report()
        return seq


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (what MALLOC_ARENA_MAX does) before the long-lived threads start.

    The job threads and their probe pools live as long as the agent; glibc gives each thread that allocates
    an arena of its own (up to 8 per core) and keeps them: resident memory bought for speed the agent does
    not need. Elsewhere (Windows, musl) there is nothing to do.
    """
    import ctypes
    import ctypes.util
    import os
    import sys

    if not sys.platform.startswith("linux") or os.environ.get("MALLOC_ARENA_MAX"):
        return False  # set by whoever started us: glibc has read it already
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-8, arenas))  # M_ARENA_MAX
    except (OSError, AttributeError):
        return False


def make_scheduler(runner: JobRunner, intervals: dict[str, float], jobs, speedup: float = 1.0):
    """A BackgroundScheduler with one job per family; first runs staggered over the first few seconds."""
    limit_malloc_arenas()
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler

    sched = BackgroundScheduler(executors={"default": ThreadPoolExecutor(max_workers=len(jobs))},
                                timezone=timezone.utc)
    now = datetime.now(timezone.utc)
    for job in jobs:
        interval = intervals[job] / speedup
        first = now + timedelta(seconds=random.uniform(0, min(_jitter(interval), 5.0)))
        sched.add_job(runner.run, _trigger(interval), args=[job], id=job,
                      name=job, max_instances=1, coalesce=True, misfire_grace_time=max(1, int(interval)),
                      next_run_time=first)
    return sched


def _jitter(interval: float) -> float:
    # Jitter spreads 500 points' reports over the interval instead of a thundering herd on the minute.
    return min(interval * 0.1, 30.0)


def _trigger(interval: float):
    from apscheduler.triggers.interval import IntervalTrigger

    return IntervalTrigger(seconds=interval, jitter=_jitter(interval))


def reschedule(sched, old: dict[str, float], new: dict[str, float], jobs, speedup: float = 1.0) -> None:
    """A new policy's intervals, from the next run on (the checks themselves are rebuilt by every run)."""
    for job in jobs:
        if old.get(job) != new[job]:
            interval = new[job] / speedup
            sched.reschedule_job(job, trigger=_trigger(interval))
            sched.modify_job(job, misfire_grace_time=max(1, int(interval)))
            log.info("job_rescheduled job=%s interval_s=%s", job, new[job])
