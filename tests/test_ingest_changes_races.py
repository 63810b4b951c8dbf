"""Ingest that stores what changed, beside other writers of the same points: a second collector on one
PostgreSQL, and prune removing a point's old history while the point reports.

Real SQLite and PostgreSQL (the ``store`` fixture, or ``pg_store_url`` where only PostgreSQL runs writers
side by side).
"""

from __future__ import annotations

import dataclasses
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from collector.store import Store
from collector.store import models as m
from collector.store.historymodels import Keyset, KeysetMember
from tests.helpers import POINT, stamp_policy
from tests.test_ingest_changes import T0, _pipeline, _report, _send
from tests.test_store_two_collectors import pg_store_url  # noqa: F401 - a fixture


@pytest.mark.parametrize("round_", range(3))
def test_two_collectors_on_one_postgresql_create_a_keyset_once(pg_store_url, round_):  # noqa: F811
    stores = [Store(pg_store_url) for _ in range(2)]
    try:
        stores[0].create_schema()
        stores[1].create_schema()
        pipes = [_pipeline(s) for s in stores]
        # Each collector gets reports of the same point carrying the same keys, at the same moment; one
        # report they both get (an agent retrying through the other collector).
        shared = _report(0)
        batches = [[shared, _report(1 + k)] for k in range(2)]
        stamp_policy(stores[0], [shared, *(b[1] for b in batches)])
        go = threading.Barrier(2)
        outcome: list = [None, None]

        def send(k):
            go.wait()
            outcome[k] = pipes[k].receive(batches[k], batches[k][-1].collected_at + timedelta(seconds=1))

        threads = [threading.Thread(target=send, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcome) == [(1, 1), (2, 0)]
        with stores[0].session() as s:
            assert s.scalar(select(func.count()).select_from(Keyset)) == 1
            keyset = s.scalar(select(Keyset.id))
            assert set(s.scalars(select(m.Report.keyset_id))) == {keyset}
            assert s.scalar(select(func.count()).select_from(KeysetMember)) == 5
        # Both writers' caches hold only what the database has.
        for p in pipes:
            assert set(p.writer.keysets.known.values()) <= {keyset} and p.writer.keysets.pending == {}
    finally:
        for s in stores:
            s.close()


def test_a_report_stored_while_its_points_history_is_pruned_keeps_every_sample(store, monkeypatch):
    """A point silent for the whole raw retention reports again while prune removes its old reports: the
    report carries keys whose rows prune is deleting. Prune and ingest serialise on the point's state row, so
    the report either sees no tails (and writes every key) or is the kept report the rows move onto."""
    from collector.store import ingest as ingest_module
    from collector.store import retention

    pipe = _pipeline(store, heartbeat_s=10**9)  # the old rows are not stale: the report carries them
    _send(pipe, store, _report(0))
    now = T0 + timedelta(days=3)
    with store.session() as s:
        s.add(m.JobState(name="rollup", runs=0, watermark=now))
    back = _report(0, seq=2)
    back = dataclasses.replace(back, collected_at=now, results=[dataclasses.replace(x, observed_at=now)
                                                                 for x in back.results])
    entered, release = threading.Event(), threading.Event()
    real_read_tails = ingest_module.read_tails

    def read_tails_then_wait(*args):
        tails = real_read_tails(*args)
        entered.set()
        release.wait(10)
        return tails

    monkeypatch.setattr(ingest_module, "read_tails", read_tails_then_wait)
    sender = threading.Thread(target=_send, args=(pipe, store, back), kwargs={"received_at": now})
    sender.start()
    assert entered.wait(10)
    pruned: list = []
    pruner = threading.Thread(target=lambda: pruned.append(
        retention.prune(store, retention.RetentionPolicy(raw_days=1), now)))
    pruner.start()
    pruner.join(1.0)  # without the lock, prune is done by now
    release.set()
    sender.join(20)
    pruner.join(20)
    assert pruned and pruned[0]["reports"] == 1
    from collector.store.samples import by_report

    [(_at, _pk, _v, _, keys)] = list(by_report(store, POINT, now - timedelta(hours=1), now + timedelta(hours=1)))
    seen = {(c, t) for c, t, _ in keys}
    assert {(x.check, x.target) for x in back.results} <= seen and len(seen) == 5, keys


def test_prune_does_not_hold_up_a_point_that_keeps_reports(pg_store_url, monkeypatch):  # noqa: F811
    """Prune locks a point's state only where the point is about to lose every report; a point with kept
    reports goes on storing while a prune batch of its old reports is still open (PostgreSQL: SQLite has one
    writer, so nothing runs beside a prune there)."""
    from collector.store import retention

    store = Store(pg_store_url)
    try:
        store.create_schema()
        pipe = _pipeline(store, heartbeat_s=10**9)
        now = T0 + timedelta(days=3)
        _send(pipe, store, _report(0))
        kept = [dataclasses.replace(r, collected_at=now - timedelta(minutes=2 - i), results=[
            dataclasses.replace(x, observed_at=now - timedelta(minutes=2 - i)) for x in r.results])
            for i, r in enumerate([_report(1), _report(2)])]
        _send(pipe, store, kept[0], received_at=now - timedelta(minutes=2))
        with store.session() as s:
            s.add(m.JobState(name="rollup", runs=0, watermark=now))
        entered, release = threading.Event(), threading.Event()
        real_carry = retention._carry_in_force

        def carry_then_wait(*args):
            real_carry(*args)
            entered.set()
            release.wait(15)

        monkeypatch.setattr(retention, "_carry_in_force", carry_then_wait)
        pruned: list = []
        pruner = threading.Thread(target=lambda: pruned.append(
            retention.prune(store, retention.RetentionPolicy(raw_days=1), now)))
        pruner.start()
        assert entered.wait(10)
        sender = threading.Thread(target=_send, args=(pipe, store, kept[1]), kwargs={"received_at": now})
        sender.start()
        sender.join(5)
        stored_beside = not sender.is_alive()
        release.set()
        sender.join(20)
        pruner.join(20)
        assert stored_beside, "ingest waited for prune's transaction"
        assert pruned and pruned[0]["reports"] == 1
        from collector.store.samples import by_report

        reports = list(by_report(store, POINT, now - timedelta(hours=1), now + timedelta(hours=1)))
        assert len(reports) == 2 and all(len(keys) == 5 for *_, keys in reports), reports
    finally:
        store.close()
