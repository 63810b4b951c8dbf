"""The sender's promises (docs/en/operations.md, "What the agent does when things go wrong") against the real
collector (collector.app.create_app under uvicorn, in this process, on SQLite and PostgreSQL).

Where the real collector cannot be made to answer a given status on command (a 503, 429 or 408, a 403, a 401
in the middle of isolating a refused report), ``_Faults`` — ASGI middleware in front of the real app —
answers the next requests with the statuses a test queues; every other request goes to the real app, which
validates, refuses a bad report with 422 and stores.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import random
import socket
import sqlite3
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from agent.outbox import Outbox, read_status
from agent.sender import Sender, backoff_delay
from collector.accounts import users
from collector.app import create_app
from collector.settings import Settings
from collector.store import models as m
from collector.store import points
from tests.conftest import fill_file_system, free_port
from tests.helpers import POINT, REGION, report_json
from tests.livecollector import InProcessCollector

AGENT_ID = "00000000-0000-4000-8000-000000000001"
EARLIER_ID = "00000000-0000-4000-8000-0000000000ee"  # an id a report got before the collector gave its own
REPORTS = "/api/v1/reports"


def _good(seq, note):
    return report_json(seq=seq, agent_id=AGENT_ID)


def _bad(seq, note):
    """A report the collector must refuse on its own (README, Hostile input: timestamps from 2000 to 2099)."""
    report = report_json(seq=seq, agent_id=AGENT_ID)
    report["collected_at"] = "1999-12-31T23:59:59Z"
    return report


class _Faults:
    """Records every report POST; answers the next ones with the queued statuses (``None``: the real app)."""

    def __init__(self, app):
        self.app, self.queue, self.posts = app, [], []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or (scope["method"], scope["path"]) != ("POST", REPORTS):
            return await self.app(scope, receive, send)
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        self.posts.append([r["seq"] for r in json.loads(gzip.decompress(raw))["reports"]])
        status = self.queue.pop(0) if self.queue else None
        if status is not None:
            body = json.dumps({"detail": f"injected {status}"}).encode()
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            return await send({"type": "http.response.body", "body": body})
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": raw, "more_body": False}

        await self.app(scope, replay, send)


@pytest.fixture
def live(store, tmp_path):
    points.upsert_point(store, POINT, "某村服务点", REGION)
    token = users.create_token(store, "agent", point_code=POINT)
    faults = _Faults(create_app(Settings(data_dir=tmp_path / "data"), store=store))
    with InProcessCollector(faults) as server:
        yield server, token, faults


def _stored(store, column=m.Report.seq):
    with store.session() as s:
        return sorted(s.scalars(select(column).where(m.Report.point_code == POINT)))


def _box(tmp_path, *builds):
    box = Outbox(tmp_path / "o.sqlite3", max_reports=1000)
    for build in builds:
        box.add(build)
    return box


class _Watched(Outbox):
    """The real outbox, counting the batches the sender has read (to know the loop is idle)."""

    reads = 0

    def batch(self, *args, **kwargs):
        out = super().batch(*args, **kwargs)
        self.reads += 1
        return out


def _last_ack_answer(tmp_path) -> dict:
    db = sqlite3.connect(tmp_path / "o.sqlite3")
    try:
        return json.loads(db.execute("SELECT value FROM meta WHERE key='last_ack_answer'").fetchone()[0])
    finally:
        db.close()


def _wait_until(condition, what: str, limit: float = 30.0) -> None:
    """Wait for an event (not a speed check): the limit only stops a hung test."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.02)


@pytest.mark.parametrize("status", [500, 503, 429, 408])
def test_server_errors_and_throttling_keep_every_report_and_are_retried_with_backoff(live, store, tmp_path, status):
    """5xx, 408 and 429 are retried with backoff (2 s doubling): the batch stays whole in the outbox, the
    reason is the outbox's last error, and the next good answer delivers it."""
    server, token, faults = live
    box = _box(tmp_path, _good, _good, _good)
    sender = Sender(box, server.url, lambda: token, lambda: AGENT_ID, timeout=10)
    faults.queue = [status, status]
    first, second = sender.send_once(), sender.send_once()
    assert 1.0 <= first <= 2.0 and 2.0 <= second <= 4.0 and sender.failures == 2
    assert box.depth() == 3 and _stored(store) == [] and faults.posts == [[1, 2, 3], [1, 2, 3]]
    assert not sender.pacing  # a backoff, not a drain pause
    assert sender.last_error.startswith("无法发送报告") and str(status) in sender.last_error
    assert read_status(tmp_path / "o.sqlite3")["last_error"] == sender.last_error
    sender.poke()
    assert not sender.wake.is_set()  # backing off: a new report does not cut the wait short
    assert sender.send_once() == 0.0 and sender.failures == 0 and sender.last_error is None
    assert box.depth() == 0 and _stored(store) == [1, 2, 3]
    assert read_status(tmp_path / "o.sqlite3")["last_error"] is None


def test_a_403_keeps_every_report_and_retries_every_5_minutes(live, store, tmp_path, caplog):
    """401/403 keep every report (the token is wrong, not the reports), retried every 5 minutes; the
    test speed-up divides that pause as it divides every other."""
    server, token, faults = live
    box = _box(tmp_path, _good, _good)
    sender = Sender(box, server.url, lambda: token, lambda: AGENT_ID, timeout=10, speedup=4)
    faults.queue = [403]
    assert sender.send_once() == 75.0
    assert box.depth() == 2 and _stored(store) == [] and faults.posts == [[1, 2]]
    assert "令牌" in sender.last_error and "HTTP 403" in sender.last_error
    assert sender.failures == 0  # not a collector failing: the slow retry, not a growing backoff
    assert any(r.getMessage().startswith("send_failed error=collector answered 403: ") for r in caplog.records)
    sender.poke()
    assert not sender.wake.is_set()  # refused: new reports wait for the slow retry
    assert sender.send_once() == 0.0 and _stored(store) == [1, 2] and box.depth() == 0


@pytest.mark.parametrize("missing", ["url", "token"])
def test_without_a_collector_url_or_a_token_nothing_is_sent_and_the_reason_is_shown(live, store, tmp_path, missing):
    server, token, faults = live
    box = _box(tmp_path, _good)
    sender = Sender(box, None if missing == "url" else server.url, lambda: None if missing == "token" else token,
                    lambda: AGENT_ID, timeout=10, speedup=3)
    assert sender.send_once() == 100.0  # every 5 minutes, divided by the speed-up
    assert "尚未注册" in sender.last_error and faults.posts == [] and box.depth() == 1
    status = read_status(tmp_path / "o.sqlite3")
    assert "尚未注册" in status["last_error"] and status["last_error_at"] > 0
    sender.poke()
    assert not sender.wake.is_set()


def test_an_empty_outbox_sends_nothing_and_looks_again_later(live, store, tmp_path):
    server, token, faults = live
    box = _box(tmp_path)
    slow = Sender(box, server.url, lambda: token, lambda: AGENT_ID, timeout=10)
    fast = Sender(box, server.url, lambda: token, lambda: AGENT_ID, timeout=10, speedup=10)
    idle = slow.send_once()
    assert idle > 0 and fast.send_once() == pytest.approx(idle / 10)
    assert faults.posts == [] and slow.last_error is None


def test_a_refused_report_is_isolated_from_a_batch_of_two(live, store, tmp_path):
    """The smallest batch that is resent one by one: the good report of the two is delivered."""
    server, token, faults = live
    box = _box(tmp_path, _bad, _good)
    sender = Sender(box, server.url, lambda: token, lambda: AGENT_ID, timeout=10)
    assert sender.send_once() == 0.0  # the rest goes on at once
    assert faults.posts == [[1, 2], [1], [2]]
    assert _stored(store) == [2] and box.depth() == 0
    assert "拒收" in sender.last_error and "HTTP 422" in sender.last_error
    assert _last_ack_answer(tmp_path) == {"accepted": 1, "duplicates": 0}  # the good one's answer, kept


def test_a_single_refused_report_is_dropped_without_being_sent_twice(live, store, tmp_path, caplog):
    server, token, faults = live
    box = _box(tmp_path, _bad)
    report_id = json.loads(box.batch().bodies[0])["report_id"]
    sender = Sender(box, server.url, lambda: token, lambda: AGENT_ID, timeout=10)
    with caplog.at_level(logging.INFO, logger="pointwatch.sender"):
        assert sender.send_once() == 0.0
    assert faults.posts == [[1]] and box.depth() == 0 and _stored(store) == []
    assert sender.last_error == f"采集端拒收报告 {report_id}（HTTP 422）"
    assert read_status(tmp_path / "o.sqlite3")["last_error"] == sender.last_error
    lines = [r for r in caplog.records if r.name == "pointwatch.sender"]
    rejected = [r for r in lines if r.getMessage().startswith("report_rejected ")]
    assert len(rejected) == 1 and rejected[0].levelno == logging.ERROR
    assert rejected[0].getMessage().startswith(f"report_rejected report_id={report_id} status=422 error=collector answered 422")
    failed = [r.getMessage() for r in lines if r.getMessage().startswith("send_failed ")]
    assert len(failed) == 1 and failed[0].startswith("send_failed error=collector answered 422")
    assert failed[0].endswith(" next_try_s=None")
    # The refusal was the last word on it: the outbox keeps it as the last acknowledgement, with the refusal.
    assert read_status(tmp_path / "o.sqlite3")["last_ack_count"] == 1
    assert _last_ack_answer(tmp_path) == {"rejected": report_id, "status": 422}


def test_isolating_stops_when_the_collector_starts_failing_and_resumes_later(live, store, tmp_path):
    """While the reports of a refused batch go one by one, a 503 is a collector failing, not a report refused:
    nothing is dropped, the sender backs off, and the next attempt isolates again from the start."""
    server, token, faults = live
    box = _box(tmp_path, _good, _bad, _good)
    sender = Sender(box, server.url, lambda: token, lambda: AGENT_ID, timeout=10)
    faults.queue = [None, 503]  # the batch goes to the real collector (422); its first report meets a 503
    delay = sender.send_once()
    assert 1.0 <= delay <= 2.0 and sender.failures == 1 and sender.last_error.startswith("无法发送报告")
    assert faults.posts == [[1, 2, 3], [1]] and box.depth() == 3 and _stored(store) == []
    assert sender.send_once() == 0.0
    assert faults.posts[2:] == [[1, 2, 3], [1], [2], [3]]
    assert _stored(store) == [1, 3] and box.depth() == 0 and sender.failures == 0


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_while_isolating_keeps_the_rest(live, store, tmp_path, status):
    server, token, faults = live
    box = _box(tmp_path, _good, _bad, _good)
    sender = Sender(box, server.url, lambda: token, lambda: AGENT_ID, timeout=10)
    faults.queue = [None, None, status]  # batch 422, first report stored, then the token is refused
    assert sender.send_once() == 300.0 and f"HTTP {status}" in sender.last_error and "令牌" in sender.last_error
    assert faults.posts == [[1, 2, 3], [1], [2]]
    assert _stored(store) == [1] and box.depth() == 2  # the refused one is not dropped on a token refusal
    assert sender.send_once() == 0.0 and _stored(store) == [1, 3] and box.depth() == 0


def test_reports_written_before_enrolment_go_out_under_the_collectors_agent_id(live, store, tmp_path):
    """The id the collector gave at enrolment replaces the local one; every report of a request gets the
    moment it was sent (``sent_at``), not the moment it was collected."""
    server, token, faults = live
    box = _box(tmp_path)
    collected = datetime.now(timezone.utc) - timedelta(minutes=10)
    for _ in range(2):
        box.add(lambda seq, note: report_json(seq=seq, agent_id=EARLIER_ID, collected_at=collected))
    before = datetime.now(timezone.utc).replace(microsecond=0)
    assert Sender(box, server.url, lambda: token, lambda: AGENT_ID, timeout=10).send_once() == 0.0
    after = datetime.now(timezone.utc)
    assert _stored(store, m.Report.agent_id) == [AGENT_ID, AGENT_ID]
    sent = _stored(store, m.Report.sent_at)
    assert len(set(sent)) == 1 and before <= sent[0].astimezone(timezone.utc) <= after


def test_without_an_id_from_the_collector_a_report_keeps_its_own(live, store, tmp_path):
    server, token, faults = live
    box = _box(tmp_path, lambda seq, note: report_json(seq=seq, agent_id=EARLIER_ID))
    assert Sender(box, server.url, lambda: token, lambda: None, timeout=10).send_once() == 0.0
    assert _stored(store, m.Report.agent_id) == [EARLIER_ID]


def test_send_failures_are_logged_once_and_recovery_once(live, store, tmp_path, caplog):
    """One ``send_failed`` line when sending starts failing (not one per retry), one
    ``collector_reachable_again`` when it works again, and a ``reports_sent`` line per batch delivered."""
    server, token, faults = live
    box = _box(tmp_path, _good, _good)
    sender = Sender(box, server.url, lambda: token, lambda: AGENT_ID, timeout=10)
    faults.queue = [503, 503, 503]
    with caplog.at_level(logging.INFO, logger="pointwatch.sender"):
        delays = [sender.send_once() for _ in range(3)]
        sender.send_once()
    lines = [r for r in caplog.records if r.name == "pointwatch.sender"]
    failed = [r for r in lines if r.getMessage().startswith("send_failed ")]
    assert len(failed) == 1 and failed[0].levelno == logging.WARNING
    detail = json.dumps({"detail": "injected 503"})
    assert failed[0].getMessage() == f"send_failed error=collector answered 503: {detail} next_try_s={round(delays[0], 1)}"
    assert _last_ack_answer(tmp_path) == {"accepted": 2, "duplicates": 0}  # the collector's answer, kept
    messages = [r.getMessage() for r in lines if r.levelno == logging.INFO]
    assert messages == ["collector_reachable_again after_failures=3",
                        "reports_sent count=2 accepted=2 duplicates=0 backlog=False"]


def test_a_cleared_error_is_not_written_again_after_every_send(live, store, tmp_path):
    """An error a previous run left in the status is cleared by the first good send; after that a send writes
    only its acknowledgement (no status write, and its sync, per send)."""
    server, token, faults = live
    box = _box(tmp_path, _good)
    box.note(last_error="采集端无法连接", last_error_at=time.time())  # left by the previous run
    sender = Sender(box, server.url, lambda: token, lambda: AGENT_ID, timeout=10)
    assert sender.send_once() == 0.0
    status = read_status(tmp_path / "o.sqlite3")
    assert status["last_error"] is None and status["last_error_at"] is None
    box.add(_good)
    statements = []
    box._db.set_trace_callback(statements.append)
    assert sender.send_once() == 0.0
    box._db.set_trace_callback(None)
    assert not [s for s in statements if "last_error" in s], statements


def test_backoff_doubles_from_2_seconds_to_5_minutes_with_equal_jitter(tmp_path):
    """docs/en/operations.md: exponential backoff and jitter, 2 s doubling to 5 min; the retry waits between
    half the step and the whole of it, so 500 agents do not retry in lockstep."""
    box = _box(tmp_path, _good)
    away = Sender(box, f"http://127.0.0.1:{free_port()}", lambda: "t", lambda: AGENT_ID, timeout=2)
    fast = Sender(box, f"http://127.0.0.1:{free_port()}", lambda: "t", lambda: AGENT_ID, timeout=2, speedup=10)
    steps = [2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]
    for step in steps:
        delay, quick = away.send_once(), fast.send_once()
        assert step / 2 <= delay <= step and step / 20 <= quick <= step / 10
    assert away.failures == len(steps) and box.depth() == 1
    assert "cannot reach collector" in away.last_error


def test_backoff_jitter_spans_the_whole_upper_half():
    random.seed(24)
    delays = [backoff_delay(3) for _ in range(2000)]  # the third retry: a step of 8 s
    assert min(delays) >= 4.0 and max(delays) <= 8.0
    assert min(delays) < 4.2 and max(delays) > 7.8  # the jitter reaches both ends of the half
    assert all(1.0 <= backoff_delay(n) <= 2.0 for n in (-3, 0, 1))  # never less than the first step


# -- the loop and its stop ------------------------------------------------------------------------------


def test_the_loop_sends_a_new_report_when_poked_and_stop_flushes_the_last_one(live, store, tmp_path):
    server, token, faults = live
    box = _Watched(tmp_path / "o.sqlite3", max_reports=100)
    box.add(_good)
    sender = Sender(box, server.url, lambda: token, lambda: AGENT_ID, timeout=10)
    assert sender.daemon  # a sender stuck in a send never keeps the agent from exiting
    sender.start()
    _wait_until(lambda: _stored(store) == [1] and box.reads == 2, "the first report sent, the loop idle")
    box.add(_good)
    sender.poke()  # the loop waits up to a minute when idle: the poke sends at once
    _wait_until(lambda: _stored(store) == [1, 2] and box.reads == 4, "the poked report sent, the loop idle")
    box.add(_good)  # no poke: only stop's last attempt sends it
    sender.stop()
    assert not sender.is_alive()
    assert _stored(store) == [1, 2, 3] and faults.posts == [[1], [2], [3]] and box.depth() == 0


def test_stop_makes_no_last_attempt_while_the_collector_is_failing(live, store, tmp_path):
    server, token, faults = live
    box = _box(tmp_path, _good)
    faults.queue = [503, 503]
    # a tiny speed-up stretches the backoff to minutes: the retry cannot come before stop
    sender = Sender(box, server.url, lambda: token, lambda: AGENT_ID, timeout=10, speedup=0.01)
    sender.start()
    _wait_until(lambda: sender.failures == 1, "the first send failed")
    sender.stop()
    assert not sender.is_alive() and faults.posts == [[1]] and box.depth() == 1


@pytest.mark.timeout(30)
def test_stops_last_attempt_is_quick_even_when_the_collector_hangs(tmp_path):
    """The last attempt at stop uses the short flush timeout, not the sender's own: a collector that takes
    the connection and never answers cannot hold the agent's shutdown for the full send timeout."""
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(8)  # connections are taken by the kernel and never answered
    box = _Watched(tmp_path / "o.sqlite3", max_reports=100)
    sender = Sender(box, f"http://127.0.0.1:{hang.getsockname()[1]}", lambda: "t", lambda: AGENT_ID, timeout=600)
    sender.start()
    _wait_until(lambda: box.reads == 1, "the loop found nothing to send")
    box.add(_good)  # no poke: the loop is idle
    try:
        sender.stop(flush_timeout=0.5)
    finally:
        hang.close()
    assert not sender.is_alive() and sender.failures == 1 and box.depth() == 1


def test_stop_survives_a_last_attempt_that_raises(tmp_path, caplog):
    box = _Watched(tmp_path / "o.sqlite3", max_reports=100)

    def token():
        raise RuntimeError("state directory gone")

    sender = Sender(box, "http://127.0.0.1:9", token, lambda: AGENT_ID, timeout=5)
    sender.start()
    _wait_until(lambda: box.reads == 1, "the loop found nothing to send")
    box.add(_good)
    with caplog.at_level(logging.WARNING, logger="pointwatch.sender"):
        sender.stop()  # must not raise
    assert [r.getMessage() for r in caplog.records if r.name == "pointwatch.sender"] == [
        "final_send_failed error=RuntimeError('state directory gone')"]
    assert box.depth() == 1


def test_a_poke_during_a_drain_pause_does_not_cut_it_short(live, store, tmp_path):
    """After a backlog batch the loop waits the drain pause on ``stopping`` alone, so new reports (each one
    pokes) cannot turn the paced drain into a flood; stop ends the pause."""
    server, token, faults = live
    box = _box(tmp_path, *[_good] * 60)
    sender = Sender(box, server.url, lambda: token, lambda: AGENT_ID, timeout=10)
    sender.start()
    _wait_until(lambda: len(faults.posts) == 1 and box.depth() == 10 and sender.pacing, "the first backlog batch")
    for _ in range(3):
        box.add(_good)
        sender.poke()
    sender.stop()
    # the pause ran until stop; the last attempt then sent what was left, in one batch of 13
    assert [len(p) for p in faults.posts] == [50, 13] and box.depth() == 0


def test_the_loop_retries_after_its_backoff_and_drains_a_backlog_by_itself(live, store, tmp_path):
    """With no poke at all, the loop's own waits end: it retries after the backoff, paces through a backlog
    and picks up a report written while it was idle (the speed-up shortens every wait to milliseconds)."""
    server, token, faults = live
    box = _box(tmp_path, *[_good] * 60)
    faults.queue = [503]
    sender = Sender(box, server.url, lambda: token, lambda: AGENT_ID, timeout=10, speedup=100)
    sender.start()
    try:
        _wait_until(lambda: box.depth() == 0, "the backlog delivered after the failure")
        assert [len(p) for p in faults.posts] == [50, 50, 10]  # failed, then paced in two batches
        box.add(_good)  # no poke: the idle wait (a minute, here 0.6 s) ends by itself
        _wait_until(lambda: box.depth() == 0, "the report written while idle delivered")
    finally:
        sender.stop()
    assert _stored(store) == list(range(1, 62))




def test_a_refused_report_waiting_in_memory_is_isolated_too(live, store, state_tmpfs):
    """A full state directory: new reports wait in memory and go out after those on disk; a refused one among
    them is isolated and dropped like one from disk, the others delivered once."""
    server, token, faults = live
    box = Outbox(state_tmpfs / "o.sqlite3", max_reports=100)
    box.add(_good)
    filler = fill_file_system(state_tmpfs)

    def big(build):  # a report that needs new pages (the disk has none)
        return lambda seq, note: {**build(seq, note), "pad": "x" * 300_000}

    for build in (_good, _bad, _good):
        box.add(big(build))
    assert box.problem and "已满" in box.problem
    sender = Sender(box, server.url, lambda: token, lambda: AGENT_ID, timeout=10)
    assert sender.send_once() == 0.0
    assert faults.posts == [[1, 2, 3, 4], [1], [2], [3], [4]]
    assert _stored(store) == [1, 2, 4] and box.depth() == 0 and "拒收" in sender.last_error
    os.unlink(filler)
    box.close()


def _read_request(conn) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += conn.recv(65536)


@pytest.mark.timeout(60)
def test_a_collector_that_stops_answering_while_isolating_is_a_retry(tmp_path):
    """The reports of a refused batch go one by one with the sender's own timeout: a collector that takes
    one and never answers makes a retry, not a sender stuck for good."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)  # the second connection (the first report alone) waits in the backlog, never answered

    def refuse_the_batch():
        conn, _ = srv.accept()
        _read_request(conn)
        body = b'{"detail":"refused"}'
        conn.sendall(b"HTTP/1.1 422 Unprocessable Entity\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        conn.close()

    threading.Thread(target=refuse_the_batch, daemon=True).start()
    box = _box(tmp_path, _good, _good)
    sender = Sender(box, f"http://127.0.0.1:{srv.getsockname()[1]}", lambda: "t", lambda: AGENT_ID, timeout=1)
    try:
        delay = sender.send_once()
    finally:
        srv.close()
    assert 1.0 <= delay <= 2.0 and sender.failures == 1 and box.depth() == 2
    assert sender.last_error.startswith("无法发送报告")
