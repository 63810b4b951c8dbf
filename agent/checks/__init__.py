"""Checks: small units with a stable id, grouped in one module per family.

Every family module exposes ``probes(config, platform) -> list[Probe]``. A :class:`Probe` is one check
against one target; its ``run`` is a plain function returning an :class:`Outcome`. The runner here owns
what every probe needs alike (as blackbox_exporter's handler does): concurrency, timing, a hard deadline,
and turning a crash into an ``error`` result, which is never counted as a pass.

Platform facts are read through :func:`read_fact`: a fact source that is missing, fails, or hangs past the
probe's deadline becomes an ``error`` naming the query (``details.fact``/``details.query``), and the source
the platform used for every fact a probe read is in ``details.fact_sources``.
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


class FactUnavailable(Exception):
    """A platform fact could not be read: ``query`` names what was asked (a WMI class, a /proc file)."""

    def __init__(self, fact: str, query: str, reason: str):
        super().__init__(f"{query}: {reason}")
        self.fact, self.query, self.reason = fact, query, reason


# What the probe running on this thread is reading now, so a deadline names the query it hung in.
_reading = threading.local()


def read_fact(platform, fact: str, *args):
    """``platform.<fact>(*args)``, any failure raised as :class:`FactUnavailable` naming the query."""
    query = platform.fact_query(fact)
    state = getattr(_reading, "state", None)
    if state is not None:
        state["reading"] = (fact, query)
    try:
        value = getattr(platform, fact)(*args)
    except FactUnavailable:
        raise
    except NotImplementedError:
        raise FactUnavailable(fact, query, f"no source for this fact on {platform.name}") from None
    except Exception as exc:  # every failure of a fact source is the same verdict: error
        raise FactUnavailable(fact, query, f"{type(exc).__name__}: {exc}") from exc
    if state is not None:
        state.pop("reading", None)
        state.setdefault("sources", {})[fact] = platform.fact_source(fact)
    return value


def unavailable(fact: str, query: str, reason: str) -> FactUnavailable:
    """What a check raises for a fact that answered empty where a machine always has something."""
    return FactUnavailable(fact, query, reason)


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
    states: list[dict] = [{} for _ in probes]
    futures = {pool.submit(_run_one, p, states[i]): i for i, p in enumerate(probes)}
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
            details = {"reason": "deadline_exceeded", "deadline_s": p.deadline}
            message = f"检查超时：{p.deadline:g} 秒内未完成"
            reading = states[i].get("reading")
            if reading:  # the fact source it hung in
                details.update(fact=reading[0], query=reading[1])
                message = f"检查超时：{p.deadline:g} 秒内未读到系统信息（{reading[1]}）"
            results[i] = Result(
                check=p.check, target=p.target, status="error", message=message, details=details,
                observed_at=utcnow(), duration_ms=round((time.monotonic() - started) * 1000, 1),
            )
    return [r for r in results if r is not None]


def _run_one(probe: Probe, state: dict | None = None) -> Result:
    observed = utcnow()
    t0 = time.perf_counter()
    _reading.state = state if state is not None else {}
    try:
        outcome = probe.run()
        sources = _reading.state.get("sources")
        if sources:
            outcome.details = {**outcome.details, "fact_sources": sources}
    except FactUnavailable as exc:  # a fact source missing, failing or empty: error naming the query
        log.warning("fact_unavailable check=%s fact=%s query=%s reason=%s", probe.check, exc.fact, exc.query,
                    exc.reason)
        outcome = Outcome("error", f"无法读取系统信息（{exc.query}）：{exc.reason}",
                          details={"reason": "fact_unavailable", "fact": exc.fact, "query": exc.query,
                                   "error": exc.reason, "fact_sources": _reading.state.get("sources", {})})
    except Exception as exc:  # a broken probe is an "error" result, never a crash of the cycle
        log.warning("probe_crashed check=%s target=%s error=%r", probe.check, probe.target, exc)
        outcome = Outcome("error", f"检查无法运行：{type(exc).__name__}: {exc}",
                          details={"reason": "exception", "exception": type(exc).__name__})
    finally:
        _reading.state = None
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
