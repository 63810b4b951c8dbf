"""The outbox's promises about its own storage (docs/en/operations.md, "What the agent does when things go
wrong"; the module's docstring), on real SQLite files: a full or read-only state directory (a real tmpfs,
filled to the last byte or mounted read-only), the memory queue of up to 500 reports, the bound and its drop
count, and what `pointwatch-agent status` reads (read_status).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import time

import pytest

from agent.outbox import Batch, Note, Outbox, read_status
from agent.scheduler import outbox_result
from agent.wire import result_to_dict
from tests.conftest import fill_file_system, require_root
from tests.helpers import report_json

FULL = "状态目录磁盘已满，报告暂存在内存中（断电将丢失）"
READ_ONLY = "状态目录只读，报告暂存在内存中（断电将丢失）"


class _Notes:
    """A report builder (the scheduler's shape) that keeps each Note it was handed; ``big``: reports that need
    new pages on a full disk (a failed write leaves its frames' space allocated to the next small one)."""

    def __init__(self):
        self.notes: list[Note] = []
        self.big = False

    def __call__(self, seq, note):
        self.notes.append(note)
        report = report_json(seq=seq)
        report["results"] = [result_to_dict(outbox_result(note))]
        if self.big:
            report["pad"] = "x" * 300_000
        return report


def _seqs(batch) -> list[int]:
    return [json.loads(b)["seq"] for b in batch.bodies]


def _rows(path, what="seq") -> list:
    db = sqlite3.connect(path)
    try:
        return [r[0] for r in db.execute(f"SELECT {what} FROM reports ORDER BY id")]
    finally:
        db.close()


def _meta(path) -> dict:
    db = sqlite3.connect(path)
    try:
        return dict(db.execute("SELECT key, value FROM meta"))
    finally:
        db.close()


def _messages(caplog, prefix: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "pointwatch.outbox" and r.getMessage().startswith(prefix)]




def _remount(directory, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(directory)], check=True)


# -- a full disk under an open outbox ---------------------------------------------------------------------


def test_a_full_disk_keeps_new_reports_in_memory_and_acknowledged_ones_are_not_sent_again(state_tmpfs, caplog):
    path = state_tmpfs / "o.sqlite3"
    build = _Notes()
    box = Outbox(path, max_reports=1000)
    for _ in range(10):
        box.add(build)
    sent = box.batch(limit=4, fresh=1)
    assert _seqs(sent) == [1, 2, 3, 10] and sent.backlog
    filler = fill_file_system(state_tmpfs)
    with caplog.at_level(logging.INFO, logger="pointwatch.outbox"):
        box.ack(sent, {"accepted": 4})  # the collector has them; the disk refuses the DELETE
        assert box.problem == FULL
        assert box.depth() == 6  # acknowledged is gone for the sender, even if still in the file
        assert _seqs(box.batch(limit=3, fresh=1)) == [4, 5, 6]  # never the acknowledged ones again
        assert _seqs(box.batch()) == [4, 5, 6, 7, 8, 9]
        build.big = True
        assert [box.add(build) for _ in range(2)] == [11, 12]  # the seq goes on in memory
        memory = build.notes[-2:]
        assert [(n.problem, n.depth, n.memory_queue, n.dropped, n.dropped_total) for n in memory] == [
            (FULL, 0, 0, 0, 0), (FULL, 1, 1, 0, 0)]
        assert memory[0].oldest_age_s is None and 0 <= memory[1].oldest_age_s < 3600
        batch = box.batch()
        assert _seqs(batch) == [4, 5, 6, 7, 8, 9, 11, 12] and batch.mem_seqs == [11, 12]
        assert box.depth() == 8
        only_memory = Batch(mem_seqs=batch.mem_seqs, bodies=batch.bodies[6:])  # as the sender isolates them
        box.ack(only_memory, {"accepted": 2})  # delivered from memory: gone, without touching the disk
        assert box.depth() == 6 and _seqs(box.batch()) == [4, 5, 6, 7, 8, 9]
        assert box.add(build) == 13
        os.unlink(filler)
        build.big = False
        assert box.add(build) == 14 and box.problem is None  # the first write that succeeds: back on disk
    assert build.notes[-1] == Note(depth=7, oldest_age_s=build.notes[-1].oldest_age_s, dropped=0, dropped_total=0)
    assert _messages(caplog, "outbox_unwritable ") == [f"outbox_unwritable path={path} error=database or disk is full"]
    assert _messages(caplog, "outbox_writable_again") == [f"outbox_writable_again path={path} moved_from_memory=1"]
    # On disk: what was waiting, in seq order (the acknowledged rows deleted now), 13 moved from memory.
    assert _rows(path) == [4, 5, 6, 7, 8, 9, 13, 14]
    bodies = _rows(path, "body")
    assert _rows(path, "report_id") == [json.loads(b)["report_id"] for b in bodies]
    status = read_status(path)
    assert (status["depth"], status["oldest_seq"], status["newest_seq"], status["last_seq"]) == (8, 4, 14, 14)
    assert status["last_ack_count"] is None  # no acknowledgement could be written while the disk was full
    box.close()


def report_json_builder(seq, note):
    return report_json(seq=seq)


# -- a read-only state directory and the memory bound ------------------------------------------------------


def test_a_read_only_state_directory_keeps_the_newest_500_in_memory_and_says_how_many_were_dropped(state_tmpfs, caplog):
    """A read-only or full state directory: reports wait in memory (up to 500) and the agent.outbox result says
    so with status error; the drops are counted like the outbox's own, and the first write that succeeds puts
    the reports back on disk, in order."""
    path = state_tmpfs / "o.sqlite3"
    Outbox(path, max_reports=1000).close()  # the outbox exists, then the disk turns read-only
    _remount(state_tmpfs, "ro")
    build = _Notes()
    with caplog.at_level(logging.INFO, logger="pointwatch.outbox"):
        box = Outbox(path, max_reports=1000)
        assert box.problem == READ_ONLY
        assert [box.add(build) for _ in range(503)] == list(range(1, 504))
        assert box.depth() == 500
        notes = build.notes
        assert (notes[0].depth, notes[0].memory_queue, notes[0].oldest_age_s) == (0, 0, None)
        assert (notes[499].depth, notes[499].memory_queue) == (499, 499)
        # the 501st pushed the first out; the next report built says so, each drop told once
        assert [(n.dropped, n.dropped_total) for n in notes[499:]] == [(0, 0), (0, 0), (1, 1), (1, 2)]
        result = outbox_result(notes[501])
        assert result.status == "error" and READ_ONLY in result.message
        assert result.details["memory_queue"] == 500 and result.details["problem"] == READ_ONLY
        first = box.batch(limit=50)
        assert _seqs(first)[:3] == [4, 5, 6] and first.backlog
        box.ack(first, {"accepted": 50})  # sent from memory: gone from it
        assert box.depth() == 450 and _seqs(box.batch(limit=1)) == [54]
        box.add(build)
        box.ack(box.batch(limit=50), {})
        assert box.depth() == 401 and _seqs(box.batch(limit=1)) == [104]
        _remount(state_tmpfs, "rw")
        assert box.add(build) == 505 and box.problem is None
    assert (notes[-2].dropped, notes[-2].dropped_total) == (1, 3)  # 504, in memory, told the third drop
    assert (notes[-1].depth, notes[-1].dropped, notes[-1].dropped_total, notes[-1].problem) == (401, 0, 3, None)
    assert _messages(caplog, "outbox_writable_again") == [f"outbox_writable_again path={path} moved_from_memory=401"]
    assert len(_messages(caplog, "outbox_unwritable ")) == 1  # once when it starts, not once per report
    assert _rows(path) == list(range(104, 506))
    status = read_status(path)
    assert status["dropped_total"] == 3 and status["last_seq"] == 505 and status["depth"] == 402
    box.close()


def test_closing_with_reports_only_in_memory_says_they_are_lost(state_tmpfs, caplog):
    path = state_tmpfs / "o.sqlite3"
    _remount(state_tmpfs, "ro")
    box = Outbox(path, max_reports=10)
    box.add(report_json_builder)
    box.add(report_json_builder)
    with caplog.at_level(logging.WARNING, logger="pointwatch.outbox"):
        box.close()
    assert _messages(caplog, "outbox_memory_reports_lost") == [
        f"outbox_memory_reports_lost count=2 reason={READ_ONLY}"]


def test_a_state_directory_that_cannot_be_made_names_the_error(state_tmpfs):
    blocker = state_tmpfs / "state"  # on a small file system with room left: not a full disk
    blocker.write_text("a file where the state directory should be")
    box = Outbox(blocker / "sub" / "o.sqlite3", max_reports=10)
    assert box.problem.startswith("状态目录无法写入（") and "Not a directory" in box.problem
    assert box.problem.endswith("），报告暂存在内存中（断电将丢失）")
    assert box.add(report_json_builder) == 1 and box.depth() == 1
    blocker.unlink()
    assert box.add(report_json_builder) == 2 and box.problem is None  # the directory can be made now
    assert _rows(blocker / "sub" / "o.sqlite3") == [1, 2]
    box.close()


def test_a_state_directory_the_agent_may_not_write_is_read_only_to_it(tmp_path):
    """Without write permission (a non-root agent, or Windows' access denied) the message says read-only."""
    require_root("changing the effective user for a moment")
    state = tmp_path / "locked"
    state.mkdir(mode=0o700)  # root's: another user may not enter it
    os.seteuid(65534)
    try:
        box = Outbox(state / "deeper" / "o.sqlite3", max_reports=10)
    finally:
        os.seteuid(0)
    assert box.problem == READ_ONLY
    box.close()


# -- the bound ---------------------------------------------------------------------------------------------


def test_the_outbox_drops_nothing_at_its_bound_and_the_oldest_beyond_it(tmp_path, caplog):
    path = tmp_path / "o.sqlite3"
    build = _Notes()
    box = Outbox(path, max_reports=3)
    with caplog.at_level(logging.WARNING, logger="pointwatch.outbox"):
        for _ in range(3):
            box.add(build)
        assert _messages(caplog, "outbox_full") == []  # exactly full is not over the bound
        box.add(build)
        box.add(build)
    assert _messages(caplog, "outbox_full") == ["outbox_full dropped_oldest=1 max_reports=3"] * 2
    assert [(n.depth, n.dropped, n.dropped_total) for n in build.notes] == [
        (0, 0, 0), (1, 0, 0), (2, 0, 0), (2, 1, 1), (2, 1, 2)]
    assert _rows(path) == [3, 4, 5]
    box.close()
    tiny = Outbox(tmp_path / "p.sqlite3", max_reports=0)  # a bound below one still keeps the newest report
    tiny.add(build)
    tiny.add(build)
    assert tiny.depth() == 1 and _seqs(tiny.batch()) == [2]
    tiny.close()


def test_the_first_report_notes_an_empty_outbox(tmp_path):
    build = _Notes()
    box = Outbox(tmp_path / "o.sqlite3", max_reports=10)
    box.add(build)
    assert build.notes == [Note(depth=0, oldest_age_s=None, dropped=0, dropped_total=0, problem=None, memory_queue=0)]
    box.add(build)
    assert build.notes[1].depth == 1 and 0 <= build.notes[1].oldest_age_s < 60
    box.close()
    assert box.add(build) == 3 and box.depth() == 3  # a closed outbox opens again for the next report
    box.close()


# -- batches -----------------------------------------------------------------------------------------------


def _padded(size: int):
    """A builder whose stored bodies are exactly ``size`` characters long."""

    def build(seq, note):
        report = report_json(seq=seq)
        report["pad"] = ""
        length = len(json.dumps(report, ensure_ascii=False, separators=(",", ":")))
        report["pad"] = "x" * (size - length)
        return report

    return build


def test_a_batch_holds_at_most_max_bytes_and_one_report_however_big(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3", max_reports=100)
    for _ in range(3):
        box.add(_padded(2000))
    assert [len(b) for b in box.batch().bodies] == [2000] * 3
    exact = box.batch(max_bytes=4000)
    assert _seqs(exact) == [1, 2] and exact.backlog  # 4000 bytes fit in 4000
    assert _seqs(box.batch(max_bytes=3999)) == [1]
    assert _seqs(box.batch(max_bytes=100)) == [1]  # a report bigger than the cap still goes, alone
    box.close()


def test_memory_reports_follow_the_disk_ones_within_the_limits(state_tmpfs):
    path = state_tmpfs / "o.sqlite3"
    box = Outbox(path, max_reports=100)
    box.add(_padded(2000))
    filler = fill_file_system(state_tmpfs)
    for _ in range(3):
        box.add(_padded(2000))
    assert box.problem == FULL
    whole = box.batch()
    assert _seqs(whole) == [1, 2, 3, 4] and whole.db_ids and whole.mem_seqs == [2, 3, 4] and not whole.backlog
    limited = box.batch(limit=3)
    assert _seqs(limited) == [1, 2, 3] and limited.backlog
    assert _seqs(box.batch(limit=1)) == [1]
    by_size = box.batch(max_bytes=6000)
    assert _seqs(by_size) == [1, 2, 3] and by_size.backlog
    assert _seqs(box.batch(max_bytes=5999)) == [1, 2]
    os.unlink(filler)
    box.close()


def test_a_backlog_of_exactly_one_batch_goes_whole(tmp_path):
    box = Outbox(tmp_path / "o.sqlite3", max_reports=100)
    for _ in range(50):
        box.add(report_json_builder)
    batch = box.batch(limit=50, fresh=5)
    assert _seqs(batch) == list(range(1, 51)) and not batch.backlog
    box.close()


def test_acknowledging_more_than_500_reports_at_once_deletes_them_all(tmp_path):
    """SQLite caps the number of bound parameters per statement; the outbox deletes in chunks."""
    path = tmp_path / "o.sqlite3"
    box = Outbox(path, max_reports=2000)
    db = box._db
    db.execute("BEGIN")
    for seq in range(1, 1202):  # a long outage's backlog, written quickly
        db.execute("INSERT INTO reports (seq, report_id, created, body) VALUES (?,?,?,?)",
                   (seq, f"r{seq}", time.time(), json.dumps({"seq": seq, "report_id": f"r{seq}"})))
    db.execute("COMMIT")
    batch = box.batch(limit=1201, fresh=5)
    assert len(batch) == 1201
    box.ack(batch, {"accepted": 1201})
    assert box.depth() == 0 and _rows(path) == []
    box.close()


# -- a connection that breaks under the outbox -------------------------------------------------------------


def test_a_broken_connection_is_dropped_and_the_next_write_reopens_it_with_synchronous_full(tmp_path, caplog):
    path = tmp_path / "o.sqlite3"
    box = Outbox(path, max_reports=100)
    box.add(report_json_builder)
    box.add(report_json_builder)
    sent = box.batch()
    box._db.close()  # the connection fails under the outbox (as after an I/O error)
    with caplog.at_level(logging.WARNING, logger="pointwatch.outbox"):
        box.note(last_error="x")
        assert box.problem == "状态目录无法写入（Cannot operate on a closed database.），报告暂存在内存中（断电将丢失）"
        assert box.batch().bodies == [] and box.depth() == 0  # reading fails: nothing, and no crash
        assert _messages(caplog, "outbox_read_failed") != []
        box.ack(sent, {"accepted": 2})  # cannot delete: remembered, never sent again
        assert _messages(caplog, "outbox_pragma_failed") != []
    assert box.problem.startswith("状态目录无法写入（")
    assert box.add(report_json_builder) == 3 and box.problem is None  # reopened: seq continues
    assert box._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again
    assert _rows(path) == [3] and _seqs(box.batch()) == [3]
    box.close()


# -- what `pointwatch-agent status` reads ------------------------------------------------------------------


def test_status_of_a_missing_outbox(tmp_path):
    assert read_status(tmp_path / "nowhere.sqlite3") == {"outbox": "missing"}


def test_status_of_an_outbox_never_written(tmp_path):
    path = tmp_path / "o.sqlite3"
    Outbox(path, max_reports=10).close()
    assert read_status(path) == {
        "outbox": "ok", "depth": 0, "oldest_age_s": None, "oldest_seq": None, "newest_seq": None, "last_seq": 0,
        "dropped_total": 0, "last_ack_at": None, "last_ack_count": None, "last_error": None,
        "last_error_at": None, "jobs": {}}


def test_status_shows_what_waits_the_last_acknowledgement_the_last_error_and_the_jobs(tmp_path):
    path = tmp_path / "o.sqlite3"
    box = Outbox(path, max_reports=3)
    box.add(report_json_builder, job="network", job_info={"ok": 5, "name": "核心网络"})
    box.add(report_json_builder, job="host")
    for _ in range(3):
        box.add(report_json_builder)
    before = time.time()
    box.ack(box.batch(limit=1, fresh=0), {"accepted": 1, "note": "长" * 1000})
    box.note(last_error="无法发送报告：超时", last_error_at=1_700_000_000.5, unused=None)
    box.close()
    db = sqlite3.connect(path)  # the oldest waiting report was made an hour ago
    db.execute("UPDATE reports SET created = ? WHERE seq = 4", (time.time() - 3600.34,))
    db.commit()
    db.close()
    status = read_status(path)
    age = status.pop("oldest_age_s")
    assert round(age, 1) == age and 3600.3 <= age <= 3600.9  # seconds, one decimal
    last_ack_at = status.pop("last_ack_at")
    assert before <= last_ack_at <= time.time()
    assert status == {
        "outbox": "ok", "depth": 2, "oldest_seq": 4, "newest_seq": 5, "last_seq": 5, "dropped_total": 2,
        "last_ack_count": 1, "last_error": "无法发送报告：超时", "last_error_at": 1_700_000_000.5,
        "jobs": {"network": {"ok": 5, "name": "核心网络"}, "host": {}}}
    assert _meta(path)["unused"] == ""  # None is stored as empty
    assert len(_meta(path)["last_ack_answer"]) == 500  # the collector's answer, kept short


def test_status_is_read_without_writing_and_a_clock_set_back_gives_age_zero(state_tmpfs):
    path = state_tmpfs / "o.sqlite3"
    box = Outbox(path, max_reports=10)
    box.add(report_json_builder)
    box._db.execute("UPDATE reports SET created = ?", (time.time() + 600,))  # made "in the future"
    box.close()
    _remount(state_tmpfs, "ro")  # status must work on a read-only state directory
    status = read_status(path)
    assert status["oldest_age_s"] == 0.0 and status["depth"] == 1
    assert sorted(p.name for p in state_tmpfs.iterdir()) == ["o.sqlite3"]


def test_the_page_cache_is_bounded(tmp_path):
    """benchmarks/README.md: the outbox's page cache is bounded to 256 KiB (SQLite: a negative cache_size is
    KiB)."""
    box = Outbox(tmp_path / "a" / "b" / "o.sqlite3", max_reports=10)  # the state directory is made
    assert box._db.execute("PRAGMA cache_size").fetchone()[0] == -256
    box.close()


@pytest.mark.parametrize("trouble", ["read-only", "full"])
def test_after_a_restart_on_an_unwritable_disk_the_seq_goes_on_and_status_still_reads(state_tmpfs, trouble):
    """The per-agent seq never reuses a number: an agent restarted on a read-only or full state directory
    numbers the reports it keeps in memory after the last one on disk (the collector has 1–3 already)."""
    path = state_tmpfs / "o.sqlite3"
    box = Outbox(path, max_reports=100)
    for _ in range(3):
        box.add(report_json_builder)
    box.close()
    filler = None
    if trouble == "read-only":
        _remount(state_tmpfs, "ro")
    else:
        filler = fill_file_system(state_tmpfs)
    box = Outbox(path, max_reports=100)  # the agent restarts
    assert box.problem == (READ_ONLY if trouble == "read-only" else FULL)
    big = _Notes()
    big.big = True
    assert box.add(big) == 4 and box.depth() == 1
    status = read_status(path)  # `pointwatch-agent status` on the unwritable disk
    assert (status["outbox"], status["depth"], status["last_seq"]) == ("ok", 3, 3)
    if filler is None:
        _remount(state_tmpfs, "rw")
    else:
        os.unlink(filler)
    assert box.add(report_json_builder) == 5 and box.problem is None
    assert _rows(path) == [1, 2, 3, 4, 5]
    box.close()


def test_without_statvfs_the_error_text_tells_full_from_read_only(state_tmpfs, tmp_path, monkeypatch):
    """Where the file system cannot be asked (Windows has no statvfs), SQLite's and the OS's own words decide."""
    monkeypatch.delattr(os, "statvfs")
    _remount(state_tmpfs, "ro")
    assert Outbox(state_tmpfs / "sub" / "o.sqlite3", max_reports=10).problem == READ_ONLY  # "Read-only file system"
    _remount(state_tmpfs, "rw")
    box = Outbox(state_tmpfs / "o.sqlite3", max_reports=100)
    box.add(report_json_builder)
    fill_file_system(state_tmpfs)
    big = _Notes()
    big.big = True
    box.add(big)
    assert box.problem == FULL  # "database or disk is full"
    box.close()
    assert Outbox(state_tmpfs / "new" / "deeper" / "o.sqlite3", max_reports=10).problem == FULL
    locked = Outbox(tmp_path / "o.sqlite3", max_reports=10)
    locked._db.execute("PRAGMA query_only=ON")  # SQLite refuses writes: "attempt to write a readonly database"
    assert locked.add(report_json_builder) == 1 and locked.problem == READ_ONLY
    locked.close()
