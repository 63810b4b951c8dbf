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
