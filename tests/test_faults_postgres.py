"""PostgreSQL restarted under load: the collector reconnects and serves; requests in flight fail cleanly.

A private PostgreSQL server (initdb + pg_ctl in a temporary directory, on a free port) so the test can
crash and restart it without touching the machine's shared server. Light agents (the agent's own
Outbox + Sender) send continuously; the server is stopped in "immediate" mode (a crash: open transactions
are cut) and started again. While it is down the collector answers 5xx, which the agents retry; once it is
back the collector serves again without a restart of its own; afterwards every report is stored once and
whole (no report without its results), and every report acknowledged before the crash survived it.
"""

from __future__ import annotations

import time

import pytest

from tests.faultkit import (
    Collector,
    Fleet,
    PrivatePostgres,
    admin_token,
    assert_delivered_once,
    http_json,
    register_points,
    wait_for,
)


@pytest.fixture
def private_pg(tmp_path):
    pg = PrivatePostgres(tmp_path).init()
    pg.start()
    yield pg
    pg.cleanup()


def test_postgres_restart_under_load_collector_reconnects_nothing_half_stored(tmp_path, private_pg):
    url = private_pg.url()
    tokens = register_points(url, 4)
    admin = admin_token(url)
    collector = Collector(tmp_path, url).start()
    fleet = Fleet(tokens, collector.base, tmp_path / "agents", every=0.1)
    try:
        fleet.start()
        wait_for(lambda: sum(len(a.outbox.acked) for a in fleet.agents) >= 40, 60, "reports before the crash")
        private_pg.stop("immediate")
        acked_before = set().union(*(a.outbox.acked for a in fleet.agents))
        time.sleep(2.0)
        # Down: ingest fails with a 5xx (retried by the agents), never a hang or a crash of the collector.
        wait_for(lambda: any(s is not None and s >= 500 for a in fleet.agents for s in a.sender.failed_statuses),
                 30, "a 5xx answer while the database is down")
        assert collector.proc.poll() is None
        private_pg.start()
        # Back: the same collector process serves reads and ingest again.
        wait_for(lambda: _points_ok(collector, admin), 60, "the collector to serve after the restart")
        resumed = sum(len(a.outbox.acked) for a in fleet.agents)
        wait_for(lambda: sum(len(a.outbox.acked) for a in fleet.agents) >= resumed + 40, 60,
                 "ingest to resume")
        fleet.stop_producing()
        wait_for(fleet.drained, 90, "the agents to deliver their backlog")
    finally:
        fleet.stop()
    try:
        statuses = {s for a in fleet.agents for s in a.sender.failed_statuses}
        assert statuses <= {None, 503}, statuses  # a clean "try again", never a bare 500 or a 4xx (dropped)
        assert_delivered_once(url, fleet, collector, admin, acked_before)
        assert collector.starts == 1
    finally:
        collector.stop()


def _points_ok(collector: Collector, admin: str) -> bool:
    try:
        return bool(http_json(f"{collector.base}/api/v1/points", admin, timeout=5))
    except OSError:
        return False
