"""Hourly roll-ups, pruning of raw history, and background jobs that run once across collectors."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select

from collector.store import models as m
from collector.store import points, queries, retention
from collector.store.retention import RetentionPolicy
from tests.helpers import ingest
from tests.test_store_basics import REGION, make_report

HOUR = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)


def _ingest_at(store, when, seq, status="ok", n=2):
    rep = make_report(seq=seq, n=n, status=status, when=when)
    ingest(store, [rep], received_at=when, policy=False)  # history rows, not scoring: the agent's and the clock's


def test_rollup_counts_statuses_and_values_per_hour(store):
    points.upsert_point(store, "620102001001", "某村", REGION)
    _ingest_at(store, HOUR + timedelta(minutes=1), 1, "ok")
    _ingest_at(store, HOUR + timedelta(minutes=30), 2, "fail")
    _ingest_at(store, HOUR + timedelta(hours=1, minutes=5), 3, "warn")
    now = HOUR + timedelta(hours=3)
    assert retention.rollup(store, now) == 2  # 08:00 and 09:00; 10:00 is not settled until 11:05
    rows = retention.hourly(store, "620102001001", HOUR, now, check="net.core.icmp")
    first = [r for r in rows if r.hour == HOUR and r.target == "10.10.0.1"][0]
    assert (first.n_ok, first.n_fail, first.n_warn, first.n_error) == (1, 1, 0, 0)
    assert abs(first.value_avg - 0.01) < 1e-9 and abs(first.value_max - 0.01) < 1e-9
    second = [r for r in rows if r.hour == HOUR + timedelta(hours=1) and r.target == "10.10.0.1"][0]
    assert second.n_warn == 1
    # The collector's own clock result is rolled up too.
    assert retention.hourly(store, "620102001001", HOUR, now, check="agent.clock_skew")[0].n_ok == 2
    assert retention.rollup(store, now) == 0  # nothing new: the watermark moved


def test_an_unsettled_hour_waits(store):
    points.upsert_point(store, "620102001001", "某村", REGION)
    _ingest_at(store, HOUR + timedelta(minutes=58), 1)
    retention.rollup(store, HOUR + timedelta(hours=1, minutes=2))  # the hour ended only 2 minutes ago
    assert retention.hourly(store, "620102001001", HOUR, HOUR + timedelta(hours=1)) == []
    retention.rollup(store, HOUR + timedelta(hours=1, minutes=6))
    assert retention.hourly(store, "620102001001", HOUR, HOUR + timedelta(hours=1)) != []


def test_prune_removes_old_raw_results_but_keeps_rollups(store):
    points.upsert_point(store, "620102001001", "某村", REGION)
    old, recent = HOUR, HOUR + timedelta(days=10)
    _ingest_at(store, old, 1)
    _ingest_at(store, recent, 2)
    now = recent + timedelta(hours=2)
    summary = retention.run_maintenance(store, RetentionPolicy(raw_days=5), now=now)
    assert summary["pruned"]["reports"] == 1 and summary["pruned"]["results"] == 3
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(m.Report)) == 1
        assert s.scalar(select(func.count()).select_from(m.Result)) == 3
    assert retention.hourly(store, "620102001001", old, old + timedelta(hours=1)) != []  # the long chart survives
    # The latest state is not history: it is untouched by pruning.
    assert len(queries.latest_for_point(store, "620102001001")) == 3


def test_raw_results_are_never_pruned_before_they_are_rolled_up(store):
    points.upsert_point(store, "620102001001", "某村", REGION)
    now = datetime.now(timezone.utc)
    _ingest_at(store, now - timedelta(days=30), 1)
    with store.session() as s:  # pretend roll-ups stalled 40 days ago
        s.add(m.JobState(name="rollup", runs=0, watermark=now - timedelta(days=40)))
    assert retention.prune(store, RetentionPolicy(raw_days=1), now)["reports"] == 0


def test_maintenance_runs_once_across_collectors(store):
    """Two Store objects (two collectors) on one database, racing: one does the work, the other skips."""
    from collector.store import Store

    other = Store(store.url)
    try:
        points.upsert_point(store, "620102001001", "某村", REGION)
        _ingest_at(store, HOUR, 1)
        results, barrier = [], threading.Barrier(2)

        def run(s, name):
            barrier.wait()
            results.append(retention.run_maintenance(s, RetentionPolicy(interval_s=3600), runner=name))

        threads = [threading.Thread(target=run, args=(s, n)) for s, n in ((store, "c1"), (other, "c2"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ran = [r for r in results if r]
        assert len(ran) == 1
        # Later in the same interval nobody runs it again; forcing does.
        assert retention.run_maintenance(other, RetentionPolicy(interval_s=3600)) is None
        assert retention.run_maintenance(other, RetentionPolicy(interval_s=3600), force=True) is not None
        with store.session() as s:
            assert s.get(m.JobState, "maintenance").runs == 2
    finally:
        other.close()


def test_policy_from_settings():
    from collector.settings import Settings

    s = Settings()
    s.extra = {"retention": {"raw_days": 30, "interval_s": 60}}
    p = RetentionPolicy.from_settings(s)
    assert (p.raw_days, p.interval_s) == (30, 60)
    assert RetentionPolicy.from_settings(Settings()).raw_days == 400
