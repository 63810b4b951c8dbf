"""The agent's outbox and sender against the real collector (collector.app.create_app under uvicorn on
loopback, on SQLite and PostgreSQL), not the stand-in in tests/agent_collector.py: the real one validates
every report, refuses a bad one with 422, de-duplicates by report_id in the store and insists on its own
wire format.
"""

from __future__ import annotations

import gzip
import json

import pytest
from sqlalchemy import select

from agent.outbox import Outbox, read_status
from agent.sender import Sender
from collector.accounts import users
from collector.app import create_app
from collector.settings import Settings
from collector.store import models as m
from collector.store import points
from tests.helpers import POINT, REGION, report_json
from tests.livecollector import InProcessCollector

AGENT_ID = "00000000-0000-4000-8000-000000000001"


def _good(seq, note):
    return report_json(seq=seq, agent_id=AGENT_ID)


def _from_1999(seq, note):
    """A report the collector must refuse (README, Hostile input: timestamps from 2000 to 2099)."""
    report = report_json(seq=seq, agent_id=AGENT_ID)
    report["collected_at"] = "1999-12-31T23:59:59Z"
    return report


class _Recorder:
    """ASGI middleware in front of the real app: keeps each request's headers and raw body."""

    def __init__(self, app):
        self.app, self.requests = app, []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        chunks = []

        async def recording_receive():
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
            return message

        await self.app(scope, recording_receive, send)
        self.requests.append((scope["method"], scope["path"], dict(scope["headers"]), b"".join(chunks)))


@pytest.fixture
def live(store, tmp_path):
    points.upsert_point(store, POINT, "某村服务点", REGION)
    token = users.create_token(store, "agent", point_code=POINT)
    app = _Recorder(create_app(Settings(data_dir=tmp_path / "data"), store=store))
    with InProcessCollector(app) as server:
        yield server, token, app


def _stored_seqs(store):
    with store.session() as s:
        return sorted(s.scalars(select(m.Report.seq).where(m.Report.point_code == POINT)))


def test_a_report_refused_with_422_is_isolated_and_the_rest_of_its_batch_is_delivered(live, store, tmp_path):
    """README (What the agent does when things go wrong): a report leaves the outbox when the collector
    answered 2xx for it, or when the collector refuses it alone with a 4xx other than 401/403 (it is
    logged with its report_id and dropped, so one bad report cannot block the rest forever).

    Guards the planted bug "a 4xx answer drops the whole batch instead of isolating the bad report".
    """
    server, token, _ = live
    box = Outbox(tmp_path / "o.sqlite3", max_reports=100)
    for build in (_good, _good, _from_1999, _good, _good):
        box.add(build)
    sender = Sender(box, server.url, lambda: token, lambda: AGENT_ID, timeout=10)
    sender.send_once()
    assert _stored_seqs(store) == [1, 2, 4, 5]  # the four good ones delivered, in order
    assert box.depth() == 0  # the refused one is not retried forever
    assert "拒收" in sender.last_error and "422" in sender.last_error
    status = read_status(tmp_path / "o.sqlite3")
    assert "拒收" in status["last_error"]
    sender.send_once()  # nothing is left to send again, nothing is stored twice
    assert _stored_seqs(store) == [1, 2, 4, 5]


def test_a_refused_token_keeps_every_report_and_the_next_good_answer_delivers_them(live, store, tmp_path):
    """401 for the batch: the token is wrong, not the reports; all stay (README: deleted only on 2xx)."""
    server, token, _ = live
    box = Outbox(tmp_path / "o.sqlite3", max_reports=100)
    for _ in range(3):
        box.add(_good)
    current = {"token": "not-a-token"}
    sender = Sender(box, server.url, lambda: current["token"], lambda: AGENT_ID, timeout=10)
    sender.send_once()
    assert box.depth() == 3 and _stored_seqs(store) == [] and "令牌" in sender.last_error
    current["token"] = token
    sender.send_once()
    assert box.depth() == 0 and _stored_seqs(store) == [1, 2, 3]


def test_the_agent_sends_its_batches_gzipped(live, store, tmp_path):
    """README: sends are batched ({"reports": [...]}, ≤ 50 per request, gzip)."""
    server, token, app = live
    box = Outbox(tmp_path / "o.sqlite3", max_reports=100)
    for _ in range(3):
        box.add(_good)
    Sender(box, server.url, lambda: token, lambda: AGENT_ID, timeout=10).send_once()
    posts = [r for r in app.requests if r[:2] == ("POST", "/api/v1/reports")]
    assert len(posts) == 1
    _method, _path, headers, raw = posts[0]
    assert headers.get(b"content-encoding") == b"gzip"
    assert raw[:2] == b"\x1f\x8b"  # the gzip magic: the body really is compressed, not only labelled
    payload = json.loads(gzip.decompress(raw))
    assert [r["seq"] for r in payload["reports"]] == [1, 2, 3]
    assert _stored_seqs(store) == [1, 2, 3]


def _posted_seqs(app) -> list[list[int]]:
    return [[r["seq"] for r in json.loads(gzip.decompress(raw))["reports"]]
            for method, path, _h, raw in app.requests if (method, path) == ("POST", "/api/v1/reports")]


def test_a_backlog_goes_out_newest_five_plus_oldest_one_request_every_5_seconds(live, store, tmp_path):
    """docs/en/operations.md (the agent): ≤ 50 reports per request; after a long outage each request carries
    the 5 newest reports plus the oldest of the backlog, one request every 5 s, so the dashboard is current
    at once and the past follows."""
    server, token, app = live
    box = Outbox(tmp_path / "o.sqlite3", max_reports=1000)
    for _ in range(100):
        box.add(_good)
    sender = Sender(box, server.url, lambda: token, lambda: AGENT_ID, timeout=10)
    assert sender.send_once() == 5.0 and sender.pacing  # more waits: the next batch in 5 s, not sooner
    assert sorted(_posted_seqs(app)[0]) == [*range(1, 46), *range(96, 101)]
    assert sender.send_once() == 0.0 and not sender.pacing  # the last 50 fill one batch: no pause after it
    assert box.depth() == 0 and _stored_seqs(store) == list(range(1, 101))
    assert [len(batch) for batch in _posted_seqs(app)] == [50, 50]
    fast = Sender(box, server.url, lambda: token, lambda: AGENT_ID, timeout=10, speedup=10)
    for _ in range(60):
        box.add(_good)
    assert fast.send_once() == 0.5  # the demo's and the tests' speed-up shortens the pause alike


def test_the_sender_says_why_it_waits_and_retries_slowly_without_a_token(live, store, tmp_path, caplog):
    """Not enrolled or a refused token: retried every 5 minutes (the IT person must enrol again), the
    reason shown as the outbox's last error; a collector that cannot be reached: backoff from 2 s doubling
    (docs/en/operations.md); a report refused alone is logged as ``report_rejected`` with its id."""
    server, token, _ = live
    box = Outbox(tmp_path / "o.sqlite3", max_reports=100)
    box.add(_good)
    unenrolled = Sender(box, None, lambda: None, lambda: None, timeout=10)
    assert unenrolled.send_once() == 300.0 and "尚未注册" in unenrolled.last_error
    assert "尚未注册" in read_status(tmp_path / "o.sqlite3")["last_error"]
    refused = Sender(box, server.url, lambda: "not-a-token", lambda: AGENT_ID, timeout=10, speedup=2)
    assert refused.send_once() == 150.0 and "HTTP 401" in refused.last_error
    from tests.conftest import free_port

    away = Sender(box, f"http://127.0.0.1:{free_port()}", lambda: token, lambda: AGENT_ID, timeout=2)
    first, second = away.send_once(), away.send_once()
    assert 1.0 <= first <= 2.0 and 2.0 <= second <= 4.0 and away.failures == 2
    away.poke()
    assert not away.wake.is_set()  # backing off: a new report does not cut the wait short
    sender = Sender(box, server.url, lambda: token, lambda: AGENT_ID, timeout=10)
    assert sender.send_once() == 0.0 and sender.last_error is None and sender.failures == 0
    assert read_status(tmp_path / "o.sqlite3")["last_error"] in ("", None)  # cleared once it sends again
    sender.poke()
    assert sender.wake.is_set()
    report = _from_1999(0, None)
    box.add(lambda seq, note: {**report, "seq": seq})
    with caplog.at_level("ERROR", logger="pointwatch.sender"):
        sender.send_once()
    rejected = [r.getMessage() for r in caplog.records if "report_rejected" in r.getMessage()]
    assert len(rejected) == 1 and rejected[0].startswith(f"report_rejected report_id={report['report_id']} status=422 ")
    assert report["report_id"] in sender.last_error and "HTTP 422" in sender.last_error
