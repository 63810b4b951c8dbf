"""The collector killed with SIGKILL while many agents send, on SQLite and on PostgreSQL.

Light agents (the agent's own Outbox + Sender, tests/faultkit.py) write reports continuously; the
collector process is killed mid-stream twice and started again on the same store. Afterwards every report
the collector acknowledged with a 2xx is stored, the agents deliver all the rest, and nothing is stored
twice — checked through `GET /api/v1/points/{code}/reports` (the seqs) and in the store itself.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from tests.faultkit import (
    Collector,
    Fleet,
    admin_token,
    assert_delivered_once,
    make_report,
    register_points,
    wait_for,
)

N_AGENTS = 6  # light agents (outbox + sender threads) in this process


def rejected(metrics: str, reason: str) -> float:
    prefix = f'pointwatch_collector_ingest_rejected_total{{reason="{reason}"}}'
    return next(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(prefix))


def test_collector_sigkill_while_agents_send_loses_and_doubles_nothing(tmp_path, db_url):
    tokens = register_points(db_url, N_AGENTS)
    admin = admin_token(db_url)
    collector = Collector(tmp_path, db_url)
    collector.start()
    fleet = Fleet(tokens, collector.base, tmp_path / "agents", every=0.1)
    acked_before_kill: set[str] = set()
    try:
        fleet.start()
        for _ in range(2):
            want = len(acked_before_kill) + 60
            wait_for(lambda w=want: sum(len(a.outbox.acked) for a in fleet.agents) >= w, 60,
                     "reports acknowledged before the kill")
            collector.kill()
            # What the collector acknowledged up to its death must survive it.
            acked_before_kill = set().union(*(a.outbox.acked for a in fleet.agents))
            time.sleep(1.0)  # agents back off, the backlog grows
            collector.start()
        time.sleep(1.0)
        fleet.stop_producing()
        wait_for(fleet.drained, 90, "the agents to deliver their backlog")
    finally:
        fleet.stop()

    try:
        assert_delivered_once(db_url, fleet, collector, admin, acked_before_kill)
        # The kills did cut requests: the agents saw failures and retried.
        assert any(None in a.sender.failed_statuses or any(s and s >= 500 for s in a.sender.failed_statuses)
                   for a in fleet.agents)
    finally:
        collector.stop()


def test_overloaded_collector_sheds_with_503_and_agents_deliver_everything(tmp_path):
    """With room for one ingest request at a time, concurrent agents get 503 "busy" (before authentication,
    cheap), back off and deliver everything later, once each.

    SQLite only, on purpose: admission (max_in_flight, the 503 before authentication) is decided before the
    store is touched, and storing each report once under SIGKILL is held on both stores above."""
    (tmp_path / "data").mkdir()
    url = f"sqlite:///{tmp_path / 'data' / 'pointwatch.db'}"
    tokens = register_points(url, N_AGENTS)
    admin = admin_token(url)
    config = tmp_path / "collector.yaml"
    config.write_text("ingest: {max_in_flight: 1}\n", encoding="utf-8")
    collector = Collector(tmp_path, url, config=config).start()
    fleet = Fleet(tokens, collector.base, tmp_path / "agents", every=0.05)
    try:
        fleet.start()
        wait_for(lambda: any(503 in a.sender.failed_statuses for a in fleet.agents), 60, "a 503 busy answer")
        time.sleep(1.0)
        fleet.stop_producing()
        wait_for(fleet.drained, 90, "the agents to deliver their backlog")
    finally:
        fleet.stop()
    try:
        assert_delivered_once(url, fleet, collector, admin, set())
        metrics = urllib.request.urlopen(collector.base + "/metrics", timeout=10).read().decode()
        assert rejected(metrics, "busy") >= 1
    finally:
        collector.stop()


def test_a_request_that_waited_too_long_is_refused_before_it_is_stored(tmp_path):
    """A request still waiting for a thread after ``max_wait_s`` gets 503 + Retry-After and stores nothing
    (here every request is "too late": the wait allowed is a microsecond). SQLite only, on purpose: the
    refusal happens before anything reaches the store, which this test checks stays empty."""
    (tmp_path / "data").mkdir()
    url = f"sqlite:///{tmp_path / 'data' / 'pointwatch.db'}"
    (code, token), = register_points(url, 1).items()
    admin = admin_token(url)
    config = tmp_path / "collector.yaml"
    config.write_text("ingest: {max_wait_s: 0.000001}\n", encoding="utf-8")
    collector = Collector(tmp_path, url, config=config).start()
    try:
        body = json.dumps(make_report(code, "a-1", 1)).encode()
        request = urllib.request.Request(collector.base + "/api/v1/reports", data=body, method="POST", headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 503 and refused.value.headers["Retry-After"] == "5"
        assert collector.reports(code, admin) == []
        metrics = urllib.request.urlopen(collector.base + "/metrics", timeout=10).read().decode()
        assert rejected(metrics, "too_late") == 1
    finally:
        collector.stop()
