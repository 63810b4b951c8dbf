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
        # Four threads are held by stuck probes: the next cycle must not queue behind them.
        again = run_probes([quick] * 5)
        assert [r.status for r in again] == ["ok"] * 5
        # Enough stuck probes and the pool is left to them: the next cycle gets a fresh one.
        more = [Probe("host.resources", f"stuck{i}", hold, deadline=0.2) for i in range(_pools.STUCK_LIMIT)]
        assert {r.status for r in run_probes(more)} == {"error"}
        assert _pools.get() is not old
        assert [r.status for r in run_probes([quick] * 3)] == ["ok"] * 3
    finally:
        release.set()


def test_job_threads_share_one_pool_as_big_as_the_widest_cycle():
    """The scheduler runs each job on any of its threads; the probe threads must not multiply with them
    (they did: a pool per scheduler thread, 4 × 10 threads where 10 do, and the agent's RSS crept up)."""
    gate = threading.Barrier(6)  # six probes of a cycle in flight together: the widest cycle here is 6

    def together():
        gate.wait(5)
        return Outcome("ok", "正常")

    names: set[str] = set()

    def probe():
        names.add(threading.current_thread().name)
        return Outcome("ok", "正常")

    ran, end = threading.Event(), threading.Event()

    def job():
        run_probes([Probe("host.resources", f"w{i}", together, deadline=5) for i in range(6)])
        gate.reset()
        run_probes([Probe("host.resources", f"t{i}", probe, deadline=2) for i in range(3)])
        ran.set()
        end.wait(30)  # job threads live on, as the scheduler's do

    threads = []
    try:
        for _ in range(4):  # four job threads, one after another
            ran.clear()
            threads.append(threading.Thread(target=job))
            threads[-1].start()
            assert ran.wait(10)
        probe_threads = {t.name for t in threading.enumerate() if t.name.startswith("probe")}
        assert names <= probe_threads
        assert len(probe_threads) <= 6 + _pools.STUCK_LIMIT  # the widest cycle (plus stuck ones of other tests)
    finally:
        end.set()
        for t in threads:
            t.join(10)
