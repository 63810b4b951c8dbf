"""Checks: small units with a stable id, grouped in one module per family.

Every family module exposes ``probes(config, platform) -> list[Probe]``. A :class:`Probe` is one check
against one target; its ``run`` is a plain function returning an :class:`Outcome`. The runner here owns
what every probe needs alike (as blackbox_exporter's handler does): concurrency, timing, a hard deadline,
and turning a crash into an ``error`` result, which is never counted as a pass.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from agent.wire import Result, Status, utcnow

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    status: Status
    message: str
    value: float | None = None
    unit: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Probe:
    check: str
    target: str
    run: Callable[[], Outcome]
    # How long the probe may take before the runner gives up on it and reports an error.
    deadline: float = 10.0


class _Pool:
    """One probe pool for the whole agent, reused from cycle to cycle so a job run does not pay for
    starting its threads again.

    A ThreadPoolExecutor starts a thread only when no idle one is there, so the pool holds as many threads
    as probes ever ran at once (a network cycle's targets, plus a job that overlaps it), never more. It
    used to be one pool per calling thread: the scheduler runs each job on whichever of its threads is
    free, so over hours every scheduler thread grew a pool the size of the largest job, 4 × 10 threads
    for the standard config where 10 do, and the agent's RSS crept up with them.

    A probe past its deadline keeps its thread busy until it returns. Once :data:`STUCK_LIMIT` are stuck
    the pool is left to them and the next cycle starts a fresh one; until then a new probe gets a free
    thread, never a place in a queue behind them (the pool has room for that many more).
    """

    SIZE = 32
    STUCK_LIMIT = 8

    def __init__(self):
        self.lock = threading.Lock()
        self.pool: ThreadPoolExecutor | None = None
        self.stuck: list = []

    def get(self) -> ThreadPoolExecutor:
        with self.lock:
            self.stuck = [f for f in self.stuck if not f.done()]
            if self.pool is not None and len(self.stuck) >= self.STUCK_LIMIT:
                self.pool.shutdown(wait=False, cancel_futures=True)  # its stuck threads end when they can
                self.pool = None
            if self.pool is None:
                self.pool = ThreadPoolExecutor(max_workers=self.SIZE, thread_name_prefix="probe")
                self.stuck = []
            return self.pool

    def left_stuck(self, future) -> None:
        with self.lock:
            self.stuck.append(future)


_pools = _Pool()


def run_probes(probes: list[Probe]) -> list[Result]:
    """Run probes concurrently; a cycle of N unreachable targets costs about one timeout, not N."""
    if not probes:
        return []
    results: list[Result | None] = [None] * len(probes)
    started = time.monotonic()
    pool = _pools.get()
    futures = {pool.submit(_run_one, p): i for i, p in enumerate(probes)}
    deadline = max(p.deadline for p in probes)
    wait(futures, timeout=deadline + 0.5)
    for fut, i in futures.items():
        if fut.done():
            results[i] = fut.result()
        else:
            # Never block the cycle on a stuck probe; it finishes (or not) in the background.
            if not fut.cancel():
                _pools.left_stuck(fut)
            p = probes[i]
            results[i] = Result(
                check=p.check, target=p.target, status="error",
                message=f"检查超时：{p.deadline:g} 秒内未完成",
                details={"reason": "deadline_exceeded", "deadline_s": p.deadline},
                observed_at=utcnow(), duration_ms=round((time.monotonic() - started) * 1000, 1),
            )
    return [r for r in results if r is not None]


def _run_one(probe: Probe) -> Result:
    observed = utcnow()
    t0 = time.perf_counter()
    try:
        outcome = probe.run()
    except Exception as exc:  # a broken probe is an "error" result, never a crash of the cycle
        log.warning("probe_crashed check=%s target=%s error=%r", probe.check, probe.target, exc)
        outcome = Outcome("error", f"检查无法运行：{type(exc).__name__}: {exc}",
                          details={"reason": "exception", "exception": type(exc).__name__})
    return Result(
        check=probe.check, target=probe.target, status=outcome.status, message=outcome.message,
        value=outcome.value, unit=outcome.unit, details=outcome.details, observed_at=observed,
        duration_ms=round((time.perf_counter() - t0) * 1000, 1),
    )


def ok(message: str, **kw) -> Outcome:
    return Outcome("ok", message, **kw)


def warn(message: str, **kw) -> Outcome:
    return Outcome("warn", message, **kw)


def fail(message: str, **kw) -> Outcome:
    return Outcome("fail", message, **kw)


def error(message: str, **kw) -> Outcome:
    return Outcome("error", message, **kw)
