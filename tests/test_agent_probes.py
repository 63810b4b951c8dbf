"""The probe runner: concurrent, deadline-bound, and its reused threads never let a stuck probe block a cycle."""

from __future__ import annotations

import threading

from agent.checks import Outcome, Probe, _pools, run_probes


def test_results_in_order_and_threads_reused_between_cycles():
    seen = []

    def probe(i):
        def run():
            seen.append(threading.current_thread().name)
            return Outcome("ok", f"第{i}项")
        return run

    probes = [Probe("host.resources", f"t{i}", probe(i), deadline=2) for i in range(5)]
    first = run_probes(probes)
    pool = _pools.pool
    second = run_probes(probes)
    assert [r.target for r in first] == [r.target for r in second] == [f"t{i}" for i in range(5)]
    assert all(r.status == "ok" for r in first + second)
    assert _pools.pool is pool  # the same threads served both cycles
    assert set(seen) <= {t.name for t in threading.enumerate()}


def test_stuck_probes_are_errors_and_a_fresh_pool_takes_over():
    release = threading.Event()
    finished = []  # a stuck probe that got to its end (only possible once `release` is set)

    def hold():
        release.wait(300)
        finished.append(1)
        return Outcome("ok", "迟到")

    stuck = [Probe("host.resources", f"stuck{i}", hold, deadline=0.2) for i in range(4)]
    quick = Probe("host.resources", "quick", lambda: Outcome("ok", "正常"), deadline=2)
    try:
        results = run_probes([*stuck, quick])
        # The cycle came back while every stuck probe is still held: it did not wait for them (an event,
        # not a wall-clock bound; how long the cycle takes is benchmarks/check_cycle.py's).
        assert not release.is_set() and finished == []
        assert [r.status for r in results] == ["error"] * 4 + ["ok"]
        assert results[0].details["reason"] == "deadline_exceeded"
        old = _pools.pool
        # Four of five threads are held by stuck probes: the next cycle must not queue behind them.
        again = run_probes([quick] * 5)
        assert [r.status for r in again] == ["ok"] * 5
        assert _pools.pool is not old
    finally:
        release.set()
