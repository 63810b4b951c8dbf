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


class _Pools(threading.local):
    """One probe pool per calling thread (the scheduler's job threads live as long as the agent), reused
    from cycle to cycle so a job run does not pay for starting its threads again.

    A probe past its deadline keeps its thread busy until it returns. Once a pool holds that many stuck
    probes it could slow later cycles, so it is left to them and the next cycle starts a fresh pool, which
    is what creating a pool per cycle gave for free.
    """

    pool: ThreadPoolExecutor | None = None
    size: int = 0
    stuck: list | None = None

    def get(self, size: int) -> ThreadPoolExecutor:
        if self.stuck:
            self.stuck = [f for f in self.stuck if not f.done()]
        if self.pool is not None and (size > self.size or len(self.stuck or ()) >= max(1, self.size // 4)):
            self.pool.shutdown(wait=False, cancel_futures=True)  # its stuck threads end when they can
            self.pool = None
        if self.pool is None:
            self.pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="probe")
            self.size, self.stuck = size, []
        return self.pool


_pools = _Pools()


def run_probes(probes: list[Probe], max_workers: int = 16) -> list[Result]:
    """Run probes concurrently; a cycle of N unreachable targets costs about one timeout, not N."""
    if not probes:
        return []
    results: list[Result | None] = [None] * len(probes)
    started = time.monotonic()
    # The pool is sized for the largest cycle seen, capped: a probe never waits behind another job's.
    pool = _pools.get(max(_pools.size, min(max_workers, len(probes))))
    futures = {pool.submit(_run_one, p): i for i, p in enumerate(probes)}
    deadline = max(p.deadline for p in probes)
    wait(futures, timeout=deadline + 0.5)
    for fut, i in futures.items():
        if fut.done():
            results[i] = fut.result()
        else:
            # Never block the cycle on a stuck probe; it finishes (or not) in the background.
            if not fut.cancel():
                _pools.stuck.append(fut)
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
