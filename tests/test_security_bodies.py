"""What a request body may cost before anyone knows who sent it (issue 18, items 2 and 3).

- Every route has a body cap, and a caller who is not signed in is refused 413 before its body is read:
  a 30 MB anonymous POST to /api/v1/users was buffered and parsed whole, only to be answered 401.
- Enrolment and reports inflate and parse off the event loop, enrolment within a few KiB once inflated and
  a few at a time: ten anonymous gzip bombs to /api/v1/enroll held /healthz for 1.6 s.

The ASGI app is driven directly here, so the test sees how many bytes the collector pulled from the client.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import threading
import time

import pytest

from collector.accounts import users
from collector.api import bodylimit, enroll
from collector.app import create_app
from collector.settings import Settings
from tests.livecollector import start_collector

BIG = 30 * 1024 * 1024
CHUNK = 256 * 1024
FORM = "multipart/form-data; boundary=pointwatch-test-boundary"
ROUTES = ["/api/v1/users", "/api/v1/tokens", "/api/v1/silences", "/api/v1/enroll-codes", "/alerts/silence",
          "/api/v1/reports", "/api/v1/enroll", "/login"]


def post(app, path: str, *, size: int = BIG, declare: bool = True, body: bytes | None = None,
         headers: dict | None = None, content_type: str = "application/json") -> tuple[int, int, bytes]:
    """POST ``size`` bytes (or ``body``) straight into the ASGI app: (status, bytes it pulled, response)."""
    payload = body if body is not None else None
    total = len(payload) if payload is not None else size
    hdrs = [(b"content-type", content_type.encode()), (b"host", b"testserver")]
    hdrs += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    hdrs.append((b"content-length", str(total).encode()) if declare else (b"transfer-encoding", b"chunked"))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": hdrs, "client": ("127.0.0.1", 5000), "server": ("testserver", 80), "state": {}}
    pulled, out = 0, {"status": None, "body": b""}

    async def receive():
        nonlocal pulled
        if pulled >= total:
            await asyncio.sleep(3600)  # the client waits for the answer
        n = min(CHUNK, total - pulled)
        chunk = payload[pulled:pulled + n] if payload is not None else b"x" * n
        pulled += n
        return {"type": "http.request", "body": chunk, "more_body": pulled < total}

    async def send(message):
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        elif message["type"] == "http.response.body":
            out["body"] += message.get("body", b"")

    asyncio.run(asyncio.wait_for(app(scope, receive, send), 30))
    return out["status"], pulled, out["body"]


@pytest.fixture
def app(store, tmp_path):
    return create_app(Settings(data_dir=tmp_path / "data"), store=store), store


@pytest.mark.parametrize("declare", [True, False], ids=["content-length", "chunked"])
def test_anonymous_big_bodies_are_refused_before_they_are_read(app, declare):
    app, _ = app
    failures = []
    for path in ROUTES:
        for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Cookie": "pw_session=forged"}):
            status, pulled, _ = post(app, path, declare=declare, headers=headers)
            # An anonymous route (enrol, login) counts a streamed body up to its own cap, no further.
            allowed = bodylimit.ANONYMOUS_ROUTES.get(path, 0) + CHUNK if not declare else 0
            # (/login reads a form, not JSON: it may answer 401 having read nothing, which is as good.)
            # (/api/v1/reports authenticates before it reads: 401 having read nothing.)
            refused = status == 413 or (path in bodylimit.ANONYMOUS_ROUTES and 400 <= status < 500) or (
                path in bodylimit.AUTHENTICATE_FIRST and status == 401 and pulled == 0)
            if not refused or pulled > allowed:
                failures.append(f"{path} {headers or 'anonymous'}: {status} after reading {pulled} bytes")
    assert not failures, "\n".join(failures)


def test_signed_in_callers_have_a_cap_per_route(app):
    app, store = app
    admin = {"Authorization": "Bearer " + users.create_token(store, "admin", "/", person="p-admin")}
    status, pulled, _ = post(app, "/api/v1/tokens", headers=admin)
    assert (status, pulled) == (413, 0)  # declared over the cap: not read at all
    status, pulled, _ = post(app, "/api/v1/tokens", headers=admin, declare=False)
    assert status == 413 and pulled <= bodylimit.DEFAULT_CAP + CHUNK  # streamed: stopped at the cap
    body = json.dumps({"role": "viewer", "region": "甘肃省", "person": "p-viewer"}).encode()
    status, _, text = post(app, "/api/v1/tokens", body=body, headers=admin)
    assert status == 201, text
    status, _, _ = post(app, "/api/v1/tokens", body=body)  # small and anonymous: the usual 401
    assert status == 401


def test_enrolment_is_capped_inflated_and_a_few_at_a_time(app):
    app, _ = app
    bomb = gzip.compress(b'{"code":"abcd","point_code":"1","hostname":"' + b"a" * (8 * 2**20) + b'"}')
    assert len(bomb) < bodylimit.ENROLL_CAP
    status, _, text = post(app, "/api/v1/enroll", body=bomb, headers={"Content-Encoding": "gzip"})
    assert status == 413 and b"decompressed" in text
    app.state.enrolling = enroll.MAX_ENROLLING  # as many anonymous enrolments in flight as allowed
    body = json.dumps({"code": "abcd", "point_code": "1"}).encode()
    status, _, _ = post(app, "/api/v1/enroll", body=body)
    assert status == 503
    app.state.enrolling = 0
    status, _, _ = post(app, "/api/v1/enroll", body=body)
    assert status == 403  # a bad code, answered as always


def test_healthz_stays_fast_while_anonymous_gzip_bombs_arrive(tmp_path):
    live = start_collector(tmp_path)
    try:
        host, port = live.base.removeprefix("http://").split(":")
        bomb = gzip.compress(b'{"code":"abcd","point_code":"1","hostname":"' + b"a" * (8 * 2**20) + b'"}', 9)
        stop = time.monotonic() + 4
        answers: list[int] = []

        def attacker():
            while time.monotonic() < stop:
                c = http.client.HTTPConnection(host, int(port), timeout=30)
                c.request("POST", "/api/v1/enroll", body=bomb,
                          headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
                answers.append(c.getresponse().status)
                c.close()

        threads = [threading.Thread(target=attacker) for _ in range(10)]
        for t in threads:
            t.start()
        worst = 0.0
        time.sleep(0.5)
        while time.monotonic() < stop:
            c = http.client.HTTPConnection(host, int(port), timeout=30)
            t0 = time.perf_counter()
            c.request("GET", "/healthz")
            assert c.getresponse().status == 200
            worst = max(worst, time.perf_counter() - t0)
            c.close()
            time.sleep(0.05)
        for t in threads:
            t.join()
        assert answers and set(answers) <= {413, 503}, set(answers)
        assert worst < 0.3, f"/healthz took {worst:.2f} s while enrolment bombs were parsed"
    finally:
        live.stop()


@pytest.mark.parametrize("role", ["viewer", "reviewer", "agent"])
def test_only_an_admin_gets_an_upload_read(app, role):
    """The points spreadsheet (up to 8 MiB, parsed as CSV or XLSX) is read for an admin only: a signed-in
    viewer, reviewer or agent is refused 403 before a byte of it is pulled, on the API and the page."""
    app, store = app
    from collector.store import points

    points.upsert_point(store, "620102001001", "甲村", "甘肃省/兰州市/城关区/某镇/甲村")
    token = (users.create_token(store, "agent", point_code="620102001001") if role == "agent"
             else users.create_token(store, role, "/", person=f"p-{role}"))
    for path in sorted(bodylimit.UPLOAD_ROUTES):
        status, pulled, text = post(app, path, size=6 * 1024 * 1024, headers={"Authorization": f"Bearer {token}"},
                                    content_type=FORM)
        assert (status, pulled) == (403, 0), (path, status, pulled, text)
    admin = users.create_token(store, "admin", "/", person="p-admin")
    status, pulled, _ = post(app, "/api/v1/points/import", size=6 * 1024 * 1024,
                             headers={"Authorization": f"Bearer {admin}"}, content_type=FORM)
    assert status != 403 and pulled > 0  # past the gate: the route reads the admin's body (and judges it)


def test_an_agent_that_goes_away_mid_body_costs_one_log_line(app, caplog):
    """An agent on a bad line times out while the collector reads its report: the read ends as a refusal
    named in one log line (nothing stored; the agent sends it again), not a ClientDisconnect traceback."""
    app, store = app
    from collector.store import points

    points.upsert_point(store, "620102001001", "甲村", "甘肃省/兰州市/城关区/某镇/甲村")
    token = users.create_token(store, "agent", point_code="620102001001")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/api/v1/reports", "raw_path": b"/api/v1/reports", "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 5000), "server": ("testserver", 80), "state": {},
             "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"),
                         (b"content-length", b"5000"), (b"authorization", f"Bearer {token}".encode())]}
    messages = iter([{"type": "http.request", "body": b'{"reports": [', "more_body": True},
                     {"type": "http.disconnect"}])

    async def receive():
        return next(messages)

    async def send(message):
        pass

    with caplog.at_level("INFO", logger="pointwatch.ingest"):
        asyncio.run(asyncio.wait_for(app(scope, receive, send), 30))
    gone = [r for r in caplog.records if r.getMessage().startswith("ingest_client_gone")]
    assert len(gone) == 1 and gone[0].exc_info is None
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
