"""Hostile reports: each refused with a 4xx naming the problem, or accepted and cleaned the documented way
(collector/ingest/accept.py's module docstring) — never a 5xx, never part of a report stored. On SQLite and on
PostgreSQL, which refuse different things (NUL in text, integers past 64 bits)."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from collector.accounts import users
from collector.app import create_app
from collector.settings import Settings
from collector.store import points
from tests.helpers import ORIGIN, POINT, REGION, login_form_token, report_json

TABLES = ("reports", "results", "latest_results", "point_state", "agents", "audit_log")


@pytest.fixture
def api(store, tmp_path):
    points.upsert_point(store, POINT, "某村医保服务点", REGION)
    token = users.create_token(store, "agent", point_code=POINT)
    app = create_app(Settings(data_dir=tmp_path / "data"), store=store)
    client = TestClient(app)
    client.headers["Authorization"] = f"Bearer {token}"
    return client, store


def snapshot(store) -> dict:
    with store.engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in TABLES}


def post(client, body, raw: bytes | None = None, gz: bool = False):
    data = raw if raw is not None else json.dumps(body, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json"}
    if gz:
        data, headers["Content-Encoding"] = gzip.compress(data), "gzip"
    return client.post("/api/v1/reports", content=data, headers=headers)


def fields(response) -> list[str]:
    detail = response.json()["detail"]
    return [p["field"] for p in detail] if isinstance(detail, list) else [str(detail)]


def nested(depth: int) -> dict:
    d: dict = {"leaf": 1}
    for _ in range(depth):
        d = {"x": d}
    return d


def _mut(path: str, value):
    """A mutation setting body[path] (dotted, [i] for lists) to value."""

    def apply(body):
        keys = path.replace("[", ".").replace("]", "").split(".")
        obj = body
        for k in keys[:-1]:
            obj = obj[int(k)] if k.isdigit() else obj[k]
        obj[int(keys[-1]) if keys[-1].isdigit() else keys[-1]] = value

    return apply


REJECTED = [
    # (name, mutation of a valid report, field the 422 must name)
    ("huge details", _mut("results[0].details", {"blob": "x" * 40_000}), "results[0].details"),
    ("deep details", _mut("results[0].details", nested(40)), "results[0].details"),
    ("deep list details", _mut("results[0].details", {"a": json.loads("[" * 30 + "]" * 30)}), "results[0].details"),
    ("10000 results", lambda b: b.update(results=b["results"][:1] * 10_000), "results"),
    ("year 1", _mut("collected_at", "0001-01-01T00:00:00Z"), "collected_at"),
    ("year 1 east of UTC", _mut("collected_at", "0001-01-01T00:00:00+08:00"), "collected_at"),
    ("year 9999", _mut("sent_at", "9999-12-31T23:59:59Z"), "sent_at"),
    ("year 9999 west of UTC", _mut("results[0].observed_at", "9999-12-31T23:59:59-05:00"),
     "results[0].observed_at"),
    ("boot in year 1", _mut("host.boot_time", "0001-01-01T00:00:00Z"), "host.boot_time"),
    ("seq past 64 bits", _mut("seq", 2**64), "seq"),
    ("seq negative", _mut("seq", -1), "seq"),
    ("seq float", _mut("seq", 1.5), "seq"),
    ("value string", _mut("results[0].value", "fast"), "results[0].value"),
    ("value past float", _mut("results[0].value", 10**400), "results[0].value"),
    ("status number", _mut("results[0].status", 1), "results[0].status"),
    ("results object", _mut("results", {"a": 1}), "results"),
    ("details list", _mut("results[0].details", [1, 2]), "results[0].details"),
    ("host string", _mut("host", "pc"), "host"),
    ("NUL in agent id", _mut("agent_id", "a\x00b"), "agent_id"),
    ("RTL in agent version", _mut("agent_version", "1.0\u202e"), "agent_version"),
    ("huge hostname", _mut("host.hostname", "h" * 5000), "host.hostname"),
    ("huge machine id", _mut("host.fingerprint.machine_id", "m" * 5000), "host.fingerprint.machine_id"),
    ("too many MACs", _mut("host.fingerprint.macs", ["00:11:22:33:44:55"] * 1000), "host.fingerprint.macs"),
    ("only invisible target", _mut("results[0].target", "\u200b\u202e"), "results[0].target"),
    # The collector's own verdicts (代理策略, 人机信息相符, clock): the judged PC may not hand them in.
    ("agent's own agent.policy", _mut("results[0].check", "agent.policy"), "results[0].check"),
    ("agent's own identity verdict", _mut("results[0].check", "identity.matches_enrolment"), "results[0].check"),
    ("agent's own clock verdict", _mut("results[0].check", "agent.clock_skew"), "results[0].check"),
]


def test_hostile_reports_are_refused_naming_the_field(api):
    # One test over every case (a fresh store per case would cost a PostgreSQL schema each).
    client, store = api
    before = snapshot(store)
    failures = []
    for name, mutate, field in REJECTED:
        body = report_json()
        mutate(body)
        r = post(client, body, gz=True)  # gzip, so the 1 MiB body limit does not answer first
        if r.status_code != 422 or field not in fields(r):
            failures.append(f"{name}: {r.status_code} {r.text[:300]}")
            continue
        # the same report in a batch with a good one: nothing of either is stored
        r = post(client, {"reports": [report_json(seq=7), body]}, gz=True)
        if r.status_code != 422 or f"reports[1].{field}" not in fields(r):
            failures.append(f"{name} in a batch: {r.status_code} {r.text[:300]}")
    assert not failures, "\n".join(failures)
    assert snapshot(store) == before


def test_a_batch_naming_one_report_id_twice_is_refused(api):
    # The collector derives its verdicts per report_id: two reports under one id would share them.
    client, store = api
    before = snapshot(store)
    first, second = report_json(seq=1), report_json(seq=2)
    second["report_id"] = first["report_id"]
    r = post(client, {"reports": [first, report_json(seq=3), second]})
    assert r.status_code == 422, r.text
    assert fields(r) == ["reports[2].report_id"]
    assert first["report_id"] in r.json()["detail"][0]["problem"]
    assert snapshot(store) == before


NOT_JSON = [
    (b'{"seq": NaN}', "NaN"),
    (b'{"seq": Infinity}', "Infinity"),
    (b'{"seq": -Infinity}', "-Infinity"),
    (b'{"seq": 1e999}', "1e999"),
    (b'{"seq": 1' + b"0" * 5000 + b"}", "digits"),
    (b"[" * 100_000, "nested"),
    (b'{"a": "\xff\xfe"}', "JSON"),
    (b"\xef\xbb\xbf{}", "report_id"),  # a UTF-8 byte-order mark is tolerated; the fields are not there
]


def test_numbers_json_has_not_are_refused(api):
    client, store = api
    before = snapshot(store)
    for raw, problem in NOT_JSON:
        r = post(client, None, raw=raw)
        assert r.status_code == 422 and problem in r.text, (raw[:40], r.text[:300])
    assert snapshot(store) == before


def test_non_finite_numbers_anywhere_in_a_report(api):
    client, store = api
    before = snapshot(store)
    for where in ('"value": 1e999', '"duration_ms": -1e999', '"details": {"rtt": 1e400}'):
        body = report_json()
        raw = json.dumps(body)
        raw = raw.replace('"value": 0.012', where, 1) if "value" in where else raw.replace(
            '"duration_ms": 3.0', where, 1)
        assert where in raw
        r = post(client, None, raw=raw.encode())
        assert r.status_code == 422 and "finite" in r.text, (where, r.text[:300])
    assert snapshot(store) == before


def test_unicode_tricks_are_accepted_and_cleaned(api):
    """NUL and lone surrogates (undecodable OS bytes) become U+FFFD everywhere; invisible formatting
    (bidi overrides, zero-width characters) is removed from the names shown to people."""
    client, store = api
    body = report_json()
    body["host"]["hostname"] = "cun\u202e-pc\u200b"
    body["results"][0]["target"] = "核心\u200d网关\u2066"
    body["results"][0]["message"] = "正常\u202egnp.exe"
    body["results"][0]["details"] = {"proc\x00name": "a\x00b", "nested": {"v": ["x\udcff"]}}
    raw = json.dumps(body, ensure_ascii=True).encode()  # lone surrogates travel as JSON escapes
    assert b"\\udcff" in raw and b"\\u0000" in raw
    r = post(client, None, raw=raw)
    assert r.status_code == 202, r.text
    [stored] = _stored(store)
    assert stored["host"]["hostname"] == "cun-pc"
    assert stored["results"][0]["target"] == "核心网关"
    assert stored["results"][0]["message"] == "正常gnp.exe"
    assert stored["results"][0]["details"] == {"proc\ufffdname": "a\ufffdb", "nested": {"v": ["x\ufffd"]}}
    # and the stored report is served back intact
    admin = users.create_token(store, "admin")
    point = client.get(f"/api/v1/points/{POINT}", headers={"Authorization": f"Bearer {admin}"})
    assert point.status_code == 200 and "核心网关" in point.text


def test_agent_clock_far_ahead_does_not_own_the_latest_state(api):
    """A report stamped years ahead (a PC whose clock is wrong) is stored with collected_at and
    observed_at clamped to the receive time, so the next honest report still updates the dashboard; the
    skew itself stays visible in agent.clock_skew (from sent_at, kept as sent)."""
    client, store = api
    future = (datetime.now(timezone.utc) + timedelta(days=3650)).replace(microsecond=0)
    ahead = report_json(seq=1, statuses={"net.core.tcp": "fail"}, collected_at=future)
    admin = users.create_token(store, "admin")

    def latest():
        point = client.get(f"/api/v1/points/{POINT}", headers={"Authorization": f"Bearer {admin}"}).json()
        return {x["check"]: x for x in point["results"]}

    assert post(client, ahead).status_code == 202
    # README: agent.clock_skew warns beyond 5 minutes; ten years ahead is far beyond.
    assert latest()["agent.clock_skew"]["status"] == "warn"
    honest = report_json(seq=2, statuses={"net.core.tcp": "ok"})
    assert post(client, honest).status_code == 202
    by_check = latest()
    assert by_check["net.core.tcp"]["status"] == "ok"
    assert by_check["agent.clock_skew"]["status"] == "ok"  # the honest report's clock is right
    first = _stored(store)[0]
    assert datetime.fromisoformat(first["collected_at"].replace("Z", "+00:00")) < future - timedelta(days=3000)
    assert first["sent_at"].startswith(str(future.year))


def test_wrong_content_and_methods(api):
    client, store = api
    before = snapshot(store)
    assert post(client, None, raw=b"").status_code == 422
    assert post(client, None, raw=b"null").status_code == 422
    assert post(client, None, raw=b'"report"').status_code == 422
    assert post(client, {"reports": []}).status_code == 422
    assert post(client, {"reports": [report_json()] * 501}, gz=True).status_code == 413
    r = client.post("/api/v1/reports", content=b"x", headers={"Content-Encoding": "br"})
    assert r.status_code == 415
    r = client.post("/api/v1/reports", content=b"not gzip", headers={"Content-Encoding": "gzip"})
    assert r.status_code == 400
    assert snapshot(store) == before


def _stored(store) -> list[dict]:
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT body FROM reports ORDER BY id")).all()
    return [json.loads(b) if isinstance(b, str) else b for (b,) in rows]


ODD = ["a\x00b", "a\ud800b", "\u202eevil", "x" * 10_000]


def test_admin_writes_with_odd_text_never_fail(api, tmp_path):
    """The admin's JSON writes take text from people; odd text is refused or stored, never a 5xx."""
    from urllib.parse import quote

    _, store = api
    client = TestClient(create_app(Settings(data_dir=tmp_path / "d2"), store=store), raise_server_exceptions=False)
    admin = {"Authorization": "Bearer " + users.create_token(store, "admin", "/")}
    users.create_user(store, "xxk", "long-enough-pw", "viewer", "/", person="xxk")  # so /login is the form
    failures = []
    login_token = login_form_token(client)  # the login form's own CSRF token, as a browser has it
    for odd in ODD:
        raw_odd = json.dumps(odd)  # lone surrogates only travel as escapes
        bodies = {
            "/api/v1/users": [f'{{"username": {raw_odd}, "password": "long-enough-pw", "role": "viewer"}}',
                              f'{{"username": "u{len(odd)}{ord(odd[1])}", "password": {raw_odd}, '
                              f'"role": "viewer", "person": {raw_odd}}}',
                              f'{{"username": "r{ord(odd[1])}", "password": "long-enough-pw", '
                              f'"role": "viewer", "region": {raw_odd}}}'],
            "/api/v1/tokens": [f'{{"role": "viewer", "description": {raw_odd}}}',
                               f'{{"role": "viewer", "person": {raw_odd}}}',
                               f'{{"role": "agent", "point": {raw_odd}}}'],
            "/api/v1/enroll-codes": [f'{{"point": {raw_odd}}}'],
            "/api/v1/silences": [f'{{"reason": {raw_odd}, "duration": "1h"}}',
                                 f'{{"reason": "维护", "duration": "1h", "target": {raw_odd}}}',
                                 f'{{"reason": "维护", "duration": {raw_odd}}}'],
        }
        for url, raws in bodies.items():
            for raw in raws:
                r = client.post(url, content=raw.encode(), headers={**admin, "Content-Type": "application/json"})
                if r.status_code >= 500:
                    failures.append(f"{url} {raw[:80]!r}: {r.status_code}")
        form = quote(odd.encode("utf-8", "surrogatepass"))  # a lone surrogate as its (invalid) UTF-8 bytes
        r = client.post("/login", content=f"username={form}&password={form}&csrf_token={login_token}",
                        follow_redirects=False, headers={"Content-Type": "application/x-www-form-urlencoded",
                                                         "Origin": ORIGIN})
        if r.status_code != 401:
            failures.append(f"POST /login {odd[:20]!r}: {r.status_code}")
        q = quote(odd[:50].replace("\ud800", "\ufffd"))
        for url in (f"/api/v1/points/{q}", f"/api/v1/alerts?point={q}", f"/api/v1/points?region={q}",
                    f"/api/v1/audit?action={q}", f"/api/v1/scores/{q}", f"/ui/points/{q}/series",
                    f"/api/v1/evidence/points/{q}.zip?from=2026-01-01&to=2026-01-02"):
            r = client.get(url, headers=admin)
            if r.status_code >= 500:
                failures.append(f"GET {url[:80]!r}: {r.status_code}")
    assert not failures, "\n".join(failures)

