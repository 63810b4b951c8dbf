"""The store on both backends: migrations, idempotent hash-chained ingest, latest state, identity, skew."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select

from agent import wire
from agent.vocabulary import AGENT_CLOCK_SKEW
from collector.store import enrolment, queries
from collector.store import models as m
from collector.store import points as points_repo
from collector.store.canonical import canonical_json
from collector.store.historymodels import KeysetMember
from tests.helpers import ingest

REGION = "甘肃省/兰州市/城关区/某镇/某村"


def documented_digest(prev: str, body: str) -> str:
    """The chain's formula as documented (collector/evidence/chain.py, README Evidence), written out here
    with hashlib rather than taken from chain_digest, the code under test."""
    return hashlib.sha256((prev + "\n" + body).encode("utf-8")).hexdigest()


# Worked by hand with hashlib from the formula sha256(prev + "\n" + body); the first report's prev is "".
B1 = '{"seq":1,"point_code":"620102001001"}'
B2 = '{"seq":2,"point_code":"620102001001","note":"城关区"}'
D1 = "335ab4b85430f629539bd3ab5ea48686e5e00564443447a618a646282f56e676"
D2 = "70dd628260379ebdf9c50a29b02607a336303565b235fe6c323ebbd811dc7538"


def test_chain_digest_is_the_documented_formula_with_literal_digests():
    """Guards the planted bug "report chaining removed from chain_digest" (a digest of the body alone)."""
    from collector.evidence.chain import chain_digest

    assert chain_digest("", B1) == D1
    assert chain_digest(D1, B2) == D2
    assert chain_digest("", B2) != D2  # the same body after another report digests differently


def make_report(point="620102001001", seq=1, agent_id="agent-1", n=40, status="ok", when=None,
                fingerprint=None, sent_offset=timedelta(0)):
    now = when or datetime.now(timezone.utc)
    fp = fingerprint or wire.Fingerprint("mid-1", "SN1", ["aa:bb:cc:dd:ee:01"])
    return wire.Report(
        report_id=str(uuid.uuid4()), seq=seq, agent_id=agent_id, point_code=point, agent_version="0.1.0",
        collected_at=now, sent_at=now + sent_offset, host=wire.Host("pc-1", "Windows 10", fingerprint=fp),
        results=[wire.Result("net.core.icmp", f"10.10.0.{i}", status, "核心网关可达", value=0.01 * i, unit="s",
                             details={"loss": 0.0}, observed_at=now) for i in range(n)])


def test_migrations_reach_head_and_match_the_models(store):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from collector.store.migrate import current_revision, head_revision

    assert current_revision(store.engine) == head_revision()
    assert store.upgrade() == (head_revision(), head_revision())  # idempotent
    with store.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), m.Base.metadata)
    # The migrations are the schema: a model change without a migration shows up here.
    assert [d for d in diffs if d[0] != "modify_type"] == []


def test_ingest_is_idempotent_and_hash_chained(store):
    points_repo.upsert_point(store, "620102001001", "某村服务点", REGION)
    first, second = make_report(seq=1), make_report(seq=2)
    assert ingest(store, [first, second]) == (2, 0)
    assert ingest(store, [second, make_report(seq=3)]) == (1, 1)
    with store.session() as s:
        rows = s.execute(select(m.Report.body, m.Report.prev_digest, m.Report.digest)
                         .order_by(m.Report.id)).all()
        n_results = s.scalar(select(func.count()).select_from(m.Result))
    assert len(rows) == 3
    prev = ""
    for body, prev_digest, digest in rows:
        assert prev_digest == prev and digest == documented_digest(prev, body)
        prev = digest
    # The body is the wire report with the policy digest it was checked against (tests.helpers stamps it).
    assert first.policy_digest and json.loads(rows[0][0]) == {**wire.report_to_dict(first),
                                                              "policy_digest": first.policy_digest}
    assert canonical_json(first) == rows[0][0]
    # Each report carried 42 keys (40 of the agent's + the collector's clock and policy results, no enrolment
    # pinned), named by its keyset; the first wrote a results row for each, the others (which say the same)
    # only for the one whose value moved: the clock skew, measured anew for every report.
    with store.session() as s:
        carried = s.execute(select(m.Report.id, func.count()).join(KeysetMember, KeysetMember.keyset_id
                                                                   == m.Report.keyset_id)
                            .group_by(m.Report.id).order_by(m.Report.id)).all()
        written = s.execute(select(m.Result.report_pk, m.Result.check).order_by(m.Result.id)).all()
    assert [n for _, n in carried] == [42, 42, 42]
    assert sum(1 for pk, _ in written if pk == carried[0][0]) == 42
    assert {check for pk, check in written if pk != carried[0][0]} <= {AGENT_CLOCK_SKEW}
    assert n_results == len(written)


def test_latest_state_never_rolls_back_to_a_backlog_report(store):
    points_repo.upsert_point(store, "620102001001", "某村服务点", REGION)
    now = datetime.now(timezone.utc)
    ingest(store, [make_report(seq=5, status="fail", when=now, n=2)])
    ingest(store, [make_report(seq=4, status="ok", when=now - timedelta(minutes=10), n=2)])
    latest = {(r.check, r.target): r for r in queries.latest_for_point(store, "620102001001")}
    assert latest[("net.core.icmp", "10.10.0.0")].status == "fail"
    point = queries.point_summary(store, "620102001001")
    assert point.counts["fail"] == 2


def test_times_from_other_zones_are_stored_in_utc(store):
    points_repo.upsert_point(store, "620102001001", "某村服务点", REGION)
    beijing = datetime.now(timezone(timedelta(hours=8)))
    rep = make_report(when=beijing, n=1)
    ingest(store, [rep])
    got = queries.reports_for_point(store, "620102001001", beijing - timedelta(hours=1), beijing + timedelta(hours=1))
    assert got and got[0]["collected_at"] == beijing


def test_fingerprint_change_is_flagged_as_a_failed_result(store):
    points_repo.upsert_point(store, "620102001001", "某村服务点", REGION)
    code = enrolment.create_enroll_code(store, "620102001001")
    agent_id, _ = enrolment.enroll(store, code, "620102001001", "pc-1",
                               {"machine_id": "mid-1", "serial": "SN1", "macs": ["AA-BB-CC-DD-EE-01"]})
    ingest(store, [make_report(agent_id=agent_id, n=1)])
    ident = {r.check: r for r in queries.latest_for_point(store, "620102001001")}["identity.matches_enrolment"]
    assert ident.status == "ok"
    assert not queries.point_summary(store, "620102001001").fingerprint_mismatch
    other = wire.Fingerprint("mid-2", "SN1", ["aa:bb:cc:dd:ee:99"])
    ingest(store, [make_report(agent_id=agent_id, seq=2, n=1, fingerprint=other)])
    ident = {r.check: r for r in queries.latest_for_point(store, "620102001001")}["identity.matches_enrolment"]
    assert ident.status == "fail" and "不一致" in ident.message and "机器标识" in ident.message
    assert queries.point_summary(store, "620102001001").fingerprint_mismatch


def test_clock_skew_is_a_warning_not_a_rejection(store):
    points_repo.upsert_point(store, "620102001001", "某村服务点", REGION)
    assert ingest(store, [make_report(n=1, sent_offset=timedelta(minutes=-20))]) == (1, 0)
    skew = {r.check: r for r in queries.latest_for_point(store, "620102001001")}["agent.clock_skew"]
    assert skew.status == "warn" and skew.value < -1100 and "校准" in skew.message
    assert queries.point_summary(store, "620102001001").clock_skew_s < -1100
    ingest(store, [make_report(seq=2, n=1)])
    skew = {r.check: r for r in queries.latest_for_point(store, "620102001001")}["agent.clock_skew"]
    assert skew.status == "ok"


def test_concurrent_ingest_is_grouped_and_counted_per_caller(store):
    """Many threads at once (the group-commit path): every caller gets its own counts, chains stay linear."""
    import threading

    points = [f"62010200100{i}" for i in range(4)]
    for code in points:
        points_repo.upsert_point(store, code, "某村服务点", REGION)
    reports = {code: [make_report(point=code, seq=s, n=3) for s in range(1, 11)] for code in points}
    results, barrier = [], threading.Barrier(16)

    def send(code, batch):
        barrier.wait()
        results.append(ingest(store, batch))

    jobs = []
    for code in points:  # each point's reports in two halves, each half sent twice (a re-send)
        for half in (reports[code][:5], reports[code][5:]):
            jobs += [(code, half), (code, half)]
    threads = [threading.Thread(target=send, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(a for a, _ in results) == 40 and sum(d for _, d in results) == 40
    assert all((a, d) in ((5, 0), (0, 5)) for a, d in results)
    with store.session() as s:
        for code in points:
            rows = s.execute(select(m.Report.body, m.Report.prev_digest, m.Report.digest)
                             .where(m.Report.point_code == code).order_by(m.Report.id)).all()
            prev = ""
            for body, prev_digest, digest in rows:
                assert prev_digest == prev and digest == documented_digest(prev, body)
                prev = digest
            assert len(rows) == 10


def test_sqlite_checkpoints_run_on_their_own_thread_not_in_commits(tmp_path):
    """collector/upkeep/checkpoint.py: while it runs, connections do not checkpoint in their commits, and its
    thread copies the WAL into the database file; other stores (the CLI) keep SQLite's own checkpoints."""
    import time

    from collector.store import Store
    from collector.upkeep.checkpoint import WalCheckpointer

    db = tmp_path / "pw.db"
    store = Store(f"sqlite:///{db}")
    store.create_schema()
    keeper = WalCheckpointer(store, every_s=0.2)
    keeper.start()
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        size_before = db.stat().st_size
        for i in range(200):  # commits that add pages; none of them copies anything into the file
            points_repo.upsert_point(store, f"62010200{i:04d}", f"服务点{i}" * 20, "甘肃省/兰州市/城关区")
        deadline = time.monotonic() + 10
        while db.stat().st_size == size_before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert db.stat().st_size > size_before  # the thread's checkpoint copied the new pages
    finally:
        keeper.stop()
    store.close()
    other = Store(f"sqlite:///{db}")
    try:
        with other.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
        with other.session() as s:
            assert s.scalar(select(func.count()).select_from(m.Point)) == 200
    finally:
        other.close()


def test_sqlite_wal_starts_over_under_a_stream_of_ingest_commits(tmp_path):
    """A PASSIVE checkpoint racing a stream of commits never copies every frame, and only then does SQLite
    start the WAL over: without the checkpointer's second pass (writers held) the WAL grows without bound
    under steady ingest. Here ingest commits back to back from four threads while the test drives the
    checkpointer's rounds; the WAL must keep starting over (its frame count falls) and stay a fraction of
    what was written."""
    import threading
    import time

    from collector.store import Store
    from collector.upkeep.checkpoint import WalCheckpointer

    db = tmp_path / "pw.db"
    store = Store(f"sqlite:///{db}")
    store.create_schema()
    points_repo.upsert_point(store, "620102001001", "服务点", REGION)
    # Its own thread rounds once an hour: the rounds are this test's, every 50 ms.
    keeper = WalCheckpointer(store, every_s=3600, restart_after_frames=64)
    keeper.start()
    stop, frames_seen, written = threading.Event(), [], [0]

    def stream(worker: int) -> None:
        seq = worker * 1_000_000
        while not stop.is_set():
            seq += 1
            ingest(store, [make_report(seq=seq, agent_id=f"agent-{worker}", n=40)])
            written[0] += 1

    threads = [threading.Thread(target=stream, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    def restarted() -> int:
        return sum(1 for a, b in zip(frames_seen, frames_seen[1:], strict=False) if b < a)

    try:
        # Until the writers have written 2000 reports and the WAL has started over three times: a fixed
        # workload, not a 4 s window a loaded machine may not fit it in. The limit only ends a test that would
        # otherwise never finish; ingest speed is benchmarks/ingest.py's.
        limit = time.monotonic() + 300
        while (written[0] < 2000 or restarted() < 3) and time.monotonic() < limit:
            state = keeper.round()
            if state:
                frames_seen.append(state[1])
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
        keeper.stop()
    wal_bytes = (tmp_path / "pw.db-wal").stat().st_size
    restarts = restarted()
    with store.engine.connect() as conn:
        page = conn.exec_driver_sql("PRAGMA page_size").scalar()
        pages_written = conn.exec_driver_sql("PRAGMA page_count").scalar()
    store.close()
    assert written[0] >= 2000, "the writers hardly ran"
    assert restarts >= 3, f"the WAL never started over: frame counts {frames_seen}"
    assert wal_bytes < pages_written * page / 2, f"WAL {wal_bytes} bytes for a {pages_written * page} byte file"
