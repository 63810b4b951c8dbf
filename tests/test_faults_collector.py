"""The collector killed with SIGKILL while many agents send, on SQLite and on PostgreSQL.

Light agents (the agent's own Outbox + Sender, tests/faultkit.py) write reports continuously; the
collector process is killed mid-stream twice and started again on the same store. Afterwards every report
the collector acknowledged with a 2xx is stored, the agents deliver all the rest, and nothing is stored
twice — checked through `GET /api/v1/points/{code}/reports` (the seqs) and in the store itself.
"""

from __future__ import annotations

import time

from sqlalchemy import func, select

from tests.faultkit import N_RESULTS, Collector, Fleet, admin_token, register_points, wait_for

N_AGENTS = 6


def test_collector_sigkill_while_agents_send_loses_and_doubles_nothing(tmp_path, db_url):
    from collector.store import Store
    from collector.store import models as m

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

    store = Store(db_url)
    try:
        with store.session() as s:
            stored_ids = set(s.scalars(select(m.Report.report_id)))
            n_rows = s.scalar(select(func.count()).select_from(m.Report))
            # None half-stored: every report has all its results (the agent's plus agent.clock_skew).
            per_report = {pk: n for pk, n in s.execute(select(m.Result.report_pk, func.count())
                                                          .group_by(m.Result.report_pk))}
            report_pks = set(s.scalars(select(m.Report.id)))
    finally:
        store.close()
    try:
        assert acked_before_kill <= stored_ids, "a report acknowledged with 2xx was lost by the kill"
        assert n_rows == len(stored_ids)
        assert set(per_report) == report_pks and set(per_report.values()) == {N_RESULTS + 1}
        for agent in fleet.agents:
            rows = collector.reports(agent.code, admin)
            seqs = sorted(r["seq"] for r in rows)
            assert seqs == list(range(1, len(agent.written) + 1)), f"{agent.code}: lost or doubled seqs"
            assert {r["report_id"] for r in rows} == agent.outbox.acked
        # The kills did cut requests: the agents saw failures and retried.
        assert any(None in a.sender.failed_statuses or any(s and s >= 500 for s in a.sender.failed_statuses)
                   for a in fleet.agents)
    finally:
        collector.stop()
