"""The durable outbox on real SQLite files, sending to a real HTTP server."""

from __future__ import annotations

import os
import sqlite3
import subprocess

import pytest

from agent.outbox import Outbox, read_status
from agent.scheduler import outbox_result
from agent.sender import Sender, backoff_delay
from agent.wire import result_to_dict
from tests.agent_collector import RecordingCollector
from tests.conftest import free_port, require_root, require_tool
from tests.helpers import report_json


def _build(seq, note):
    """A whole wire report carrying the outbox result, as the scheduler builds it (valid as the collector
    checks it: tests/agent_collector.py validates with the collector's own parser)."""
    report = report_json(seq=seq)
    report["results"] = [result_to_dict(outbox_result(note))]
    return report


def _outbox_result(report):
    return next(r for r in report["results"] if r["check"] == "agent.outbox")


def test_fresh_reports_only_move_forward_during_a_backlog(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3", max_reports=1000)
    for _ in range(120):
        box.add(_build)
    first = box.batch(limit=50, fresh=5)
    box.ack(first)
    for _ in range(3):  # three new reports while the backlog drains
        box.add(_build)
    second = [_seq(b) for b in box.batch(limit=50, fresh=5).bodies]
    # Fresh: only 121-123, newer than the fresh 116-120 already sent; 114 and 115 wait for the backlog.
    assert second == list(range(46, 93)) + [121, 122, 123]


def test_seq_is_persisted_and_continues_after_reopen(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3", max_reports=100)
    assert [box.add(_build) for _ in range(3)] == [1, 2, 3]
    box.close()
    box = Outbox(tmp_path / "o.sqlite3", max_reports=100)
    assert box.add(_build) == 4
    db = sqlite3.connect(tmp_path / "o.sqlite3")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [r[0] for r in db.execute("SELECT seq FROM reports ORDER BY id")] == [1, 2, 3, 4]


def test_ack_deletes_only_the_reports_sent(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3", max_reports=100)
    for _ in range(3):
        box.add(_build)
    batch = box.batch()
    box.add(_build)  # written while the batch was in flight
    box.ack(batch, {"accepted": 3})
    assert box.depth() == 1
    remaining = box.batch()
    assert [_seq(b) for b in remaining.bodies] == [4]
    status = read_status(tmp_path / "o.sqlite3")
    assert status["depth"] == 1 and status["last_ack_count"] == 3 and status["last_seq"] == 4


def _seq(body):
    import json

    return json.loads(body)["seq"]


def test_backlog_batch_is_newest_plus_oldest_in_order(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3", max_reports=1000)
    for _ in range(120):
        box.add(_build)
    batch = box.batch(limit=50, fresh=5)
    seqs = [_seq(b) for b in batch.bodies]
    assert batch.backlog
    assert seqs == list(range(1, 46)) + list(range(116, 121))  # oldest 45, then the newest 5, in order
    small = Outbox(tmp_path / "p.sqlite3", max_reports=1000)
    for _ in range(10):
        small.add(_build)
    b = small.batch(limit=50, fresh=5)
    assert not b.backlog and [_seq(x) for x in b.bodies] == list(range(1, 11))


def test_full_outbox_drops_oldest_and_the_next_report_says_how_many(tmp_path):
    collector = RecordingCollector(free_port()).start()
    try:
        box = Outbox(tmp_path / "o.sqlite3", max_reports=5)
        for _ in range(8):
            box.add(_build)
        assert box.depth() == 5
        box.add(_build)  # seq 9 is the next report built after the drops
        sender = Sender(box, collector.url, lambda: collector.token, lambda: "agent-1", timeout=5)
        while box.depth():
            sender.send_once()
        assert collector.seqs() == [5, 6, 7, 8, 9]
        told = _outbox_result(next(r for r in collector.stored.values() if r["seq"] == 9))
        # The running total travels with every report, so drops told in reports that were themselves
        # dropped are not lost.
        assert told["status"] == "warn" and told["details"]["dropped_total"] == 4
        assert "丢弃" in told["message"] and "累计 4 份" in told["message"]
        assert read_status(tmp_path / "o.sqlite3")["dropped_total"] == 4
        # The count is told once, not in every later report.
        box.add(_build)
        sender.send_once()
        later = _outbox_result(next(r for r in collector.stored.values() if r["seq"] == 10))
        assert later["status"] == "ok" and later["details"] == {**later["details"], "dropped": 0, "dropped_total": 4}
    finally:
        collector.stop()


def test_backoff_is_exponential_jittered_and_capped():
    delays = [backoff_delay(n, base=2, cap=300) for n in range(1, 12)]
    assert 1 <= delays[0] <= 2 and 4 <= delays[2] <= 8
    assert all(150 <= d <= 300 for d in delays[8:])
    assert len({round(backoff_delay(5), 6) for _ in range(20)}) > 1


def test_a_401_keeps_every_report_and_the_next_2xx_delivers_them(tmp_path):
    """Named for what it does (it used to claim the 4xx isolation, which it never reached): a revoked token
    keeps the batch. A report refused with 422 by the real collector, isolated while the rest of its batch
    is delivered, is tests/test_agent_against_collector.py's."""
    collector = RecordingCollector(free_port()).start()
    try:
        box = Outbox(tmp_path / "o.sqlite3", max_reports=100)
        for _ in range(3):
            box.add(_build)
        sender = Sender(box, collector.url, lambda: collector.token, lambda: "agent-1", timeout=5)
        collector.status_override = 401  # token revoked: keep everything
        sender.send_once()
        assert box.depth() == 3 and "令牌" in sender.last_error
        collector.status_override = None
        sender.send_once()
        assert collector.seqs() == [1, 2, 3] and box.depth() == 0
    finally:
        collector.stop()


@pytest.fixture
def small_tmpfs(tmp_path):
    require_root("mounting a small tmpfs as a state directory")
    require_tool("mount", "mount")
    mnt = tmp_path / "state"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_keeps_reports_in_memory_says_so_and_recovers(small_tmpfs):
    collector = RecordingCollector(free_port()).start()
    try:
        box = Outbox(small_tmpfs / "o.sqlite3", max_reports=1000)
        box.add(_build)
        filler = small_tmpfs / "filler"
        with open(filler, "wb") as f:  # fill the disk to the last byte
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        big = lambda seq, note: {**_build(seq, note), "pad": "x" * 200_000}  # noqa: E731 (needs new pages)
        box.add(big)
        assert box.problem and "已满" in box.problem
        box.add(_build)
        sender = Sender(box, collector.url, lambda: collector.token, lambda: "agent-1", timeout=5)
        sender.send_once()
        assert collector.seqs() == [1, 2, 3]
        told = _outbox_result(collector.stored[next(i for i, r in collector.stored.items() if r["seq"] == 3)])
        assert told["status"] == "error" and "已满" in told["message"]
        os.unlink(filler)
        assert box.add(_build) == 4 and box.problem is None
        sender.send_once()
        assert collector.seqs() == [1, 2, 3, 4] and collector.duplicates == 0 and box.depth() == 0
    finally:
        collector.stop()


def _synchronous(box: Outbox) -> int:
    return box._db.execute("PRAGMA synchronous").fetchone()[0]


FULL = 2  # PRAGMA synchronous: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA (sqlite.org/pragma.html#pragma_synchronous)


def test_every_written_report_is_committed_with_synchronous_full_also_after_an_ack(tmp_path):
    """README: "Kill -9 or a power cut loses no written report" — the outbox is WAL with synchronous FULL.

    In WAL mode only FULL syncs the log at each commit; under NORMAL the last commits before a power cut can
    be lost. The ack lowers the connection to NORMAL for its own delete (a lost ack only re-sends), so after
    every ack the connection must be back at FULL before the next report is written, and every add() and
    ack() must be committed (visible to another connection) when it returns.

    Guards the planted bug "the outbox's synchronous=FULL commit after an ack removed".
    """
    path = tmp_path / "o.sqlite3"
    box = Outbox(path, max_reports=100)
    other = sqlite3.connect(path)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert _synchronous(box) == FULL
    for round_ in range(3):
        box.add(_build)
        box.add(_build)
        assert _synchronous(box) == FULL
        assert other.execute("SELECT count(*) FROM reports").fetchone()[0] == 2, "add() returned uncommitted"
        batch = box.batch()
        box.ack(batch, {"accepted": 2})
        assert other.execute("SELECT count(*) FROM reports").fetchone()[0] == 0, "ack() returned uncommitted"
        assert _synchronous(box) == FULL, f"after ack {round_ + 1} the next report would be written without FULL"
        box.note(last_error="x")
        assert _synchronous(box) == FULL
    box.add(_build)  # the report written right after the last ack: on disk, synced
    assert other.execute("SELECT count(*) FROM reports").fetchone()[0] == 1
    assert _synchronous(box) == FULL
    box.close()


def test_a_collector_dying_mid_answer_is_a_retry_not_the_end_of_the_sender(tmp_path):
    """Seen in test_faults_collector under SIGKILL: the collector sent its status line and headers, then died
    before the body; http.client raised IncompleteRead (not an OSError), which ended the sender thread and
    so all sending until the agent restarted. It must be an ordinary retryable send failure."""
    import socket
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def answer_half():
        conn, _ = srv.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 29\r\n\r\n{")
        conn.close()

    t = threading.Thread(target=answer_half, daemon=True)
    t.start()
    box = Outbox(tmp_path / "o.sqlite3", max_reports=100)
    box.add(_build)
    sender = Sender(box, f"http://127.0.0.1:{srv.getsockname()[1]}", lambda: "t", lambda: "a", timeout=10)
    try:
        delay = sender.send_once()  # must not raise
    finally:
        t.join(10)
        srv.close()
    assert delay > 0 and sender.failures == 1 and box.depth() == 1  # kept, retried after a backoff
