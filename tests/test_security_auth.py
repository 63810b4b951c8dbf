"""Who gets in and what they see: login brute force slowed and audited, ids guessed across counties,
one point's token writing for another, and the security headers on every response of every route.

The route × role × region matrix itself is tests/test_roles_matrix.py; this file reuses its world and its
route walk rather than repeating them."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from agent.wire import report_to_dict
from collector.accounts import users
from collector.accounts.throttle import login_throttle
from collector.app import create_app
from collector.settings import Settings
from collector.store import audit, points, queries
from tests.helpers import make_report, web_login
from tests.test_roles_matrix import COUNTY_A, COUNTY_B, POINT_A, POINT_B, endpoints, fill
from tests.test_roles_matrix import world as _matrix_world

world = _matrix_world  # the matrix's fixture (principals bound to county A, a point in each county)

PASSWORD = "village-clinic-2026"


class FakeClock:
    """The throttle's clock, moved by the test: the documented limits (minutes, an hour) without sleeping."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def site(store, tmp_path):
    points.upsert_point(store, POINT_A, "城关区某村服务点", COUNTY_A + "/某镇/某村")
    points.upsert_point(store, POINT_B, "七里河区秘密服务点", COUNTY_B + "/某镇/某村")
    users.create_user(store, "xxk", PASSWORD, "viewer", COUNTY_A)
    app = create_app(Settings(data_dir=tmp_path / "data"), store=store)
    clock = FakeClock()
    login_throttle(store).clock = clock  # the service's throttle with its own limits; only time is ours
    return app, store, clock


def login(client, username: str, password: str):
    return web_login(client, username, password)


def failed_logins(store, username: str) -> list[dict]:
    return [e for e in audit.audit_entries(store, "/", 1000, None, "login.failed") if e["target"] == f"user:{username}"]


# README, Security, Login brute force: 5 failures per username within an hour, or 20 from one address within
# 15 minutes, lock for 30 s, doubling with each further failure up to 15 minutes.
USER_FREE, USER_WINDOW_S = 5, 3600
SOURCE_FREE, SOURCE_WINDOW_S = 20, 15 * 60
LOCKS_S = [30, 60, 120, 240, 480, 900, 900]  # the 5th failure, then each further one after its lock expired


def test_brute_force_on_one_username_is_locked_audited_and_expires(site):
    """Guards the planted bug "login throttle limits changed" (per username: count, doubling, 15 min cap)."""
    app, store, clock = site
    client = TestClient(app)
    for i in range(USER_FREE - 1):  # just below the limit: still only "wrong password"
        clock.advance(USER_WINDOW_S / USER_FREE)  # spread over (less than) the hour
        r = login(client, "xxk", f"guess-{i}")
        assert r.status_code == 401 and "用户名或密码不正确" in r.text
    r = login(client, "xxk", "guess-4")  # the 5th failure within the hour locks for 30 s
    assert r.status_code == 429 and "登录失败次数过多" in r.text and r.headers["retry-after"] == "30"
    assert "请 30 秒后再试" in r.text
    r = login(client, "xxk", PASSWORD)  # the right password during the lock: refused all the same
    assert r.status_code == 429 and "pw_session" not in r.headers.get("set-cookie", "")
    entries = failed_logins(store, "xxk")
    assert len(entries) == 6
    assert entries[0]["details"]["reason"] == "locked"  # newest first
    assert entries[1]["details"] == {"reason": "password", "failures": 5, "locked_s": 30}
    assert all("guess" not in str(e) and PASSWORD not in str(e) for e in entries)
    clock.advance(29)
    assert login(client, "xxk", PASSWORD).status_code == 429  # one second before the lock ends
    for n, lock in enumerate(LOCKS_S[1:], start=5):  # each further failure after the lock doubles it
        clock.advance(LOCKS_S[n - 5] if n > 5 else 1)
        r = login(client, "xxk", f"guess-{n}")
        assert r.status_code == 429 and r.headers["retry-after"] == str(lock), (n, r.headers["retry-after"])
    assert "请 15 分钟后再试" in r.text  # capped at 15 minutes
    clock.advance(899)
    assert login(client, "xxk", PASSWORD).status_code == 429
    clock.advance(1)
    r = login(client, "xxk", PASSWORD)
    assert r.status_code == 303 and "pw_session" in r.headers["set-cookie"]
    r = login(client, "xxk", "guess-x")  # a success starts the count again
    assert r.status_code == 401


def test_a_username_count_is_forgotten_after_a_quiet_hour(site):
    app, store, clock = site
    client = TestClient(app)
    for i in range(USER_FREE - 1):
        assert login(client, "xxk", f"guess-{i}").status_code == 401
    clock.advance(USER_WINDOW_S + 1)
    assert login(client, "xxk", "guess-late").status_code == 401  # a new count, not the 5th failure
    for i in range(USER_FREE - 2):
        assert login(client, "xxk", f"again-{i}").status_code == 401
    assert login(client, "xxk", "again-last").status_code == 429


def test_unknown_usernames_lock_the_same_and_one_source_is_limited_across_names(site):
    """Guards the planted bug "login throttle limits changed" (per address: 20 within 15 minutes)."""
    app, store, clock = site
    client = TestClient(app)
    for i in range(USER_FREE - 1):
        assert login(client, "nobody", f"g{i}").status_code == 401
    r = login(client, "nobody", "g4")  # no hint that "nobody" does not exist
    assert r.status_code == 429 and r.headers["retry-after"] == "30"
    clock.advance(SOURCE_WINDOW_S + 1)  # the address's 5 failures are forgotten; "nobody" stays counted
    # One address (the test client) trying name after name, once each, within 15 minutes:
    for i in range(SOURCE_FREE - 1):
        clock.advance(SOURCE_WINDOW_S / SOURCE_FREE / 2)
        assert login(client, f"name-{i}", "x").status_code == 401, f"failure {i + 1} from one address"
    r = login(client, "name-last", "x")  # the 20th
    assert r.status_code == 429 and r.headers["retry-after"] == "30"
    r = login(client, "xxk", PASSWORD)  # the real user from that address waits too
    assert r.status_code == 429
    assert failed_logins(store, "xxk")[0]["details"]["reason"] == "locked"
    assert failed_logins(store, "xxk")[0]["source"] == "testclient"
    clock.advance(30)
    assert login(client, "xxk", PASSWORD).status_code == 303


def test_an_address_count_is_forgotten_after_a_quiet_quarter_hour(site):
    app, store, clock = site
    client = TestClient(app)
    for i in range(SOURCE_FREE - 1):
        assert login(client, f"name-{i}", "x").status_code == 401
    clock.advance(SOURCE_WINDOW_S + 1)
    assert login(client, "name-late", "x").status_code == 401


def test_viewer_of_one_county_cannot_guess_into_another(world):
    """Ids and filters that are not a {code} path (those are the matrix's): query filters, region
    parameters, silence ids, the page series."""
    app, client, principals = world
    store = app.state.store
    root = {"Authorization": "Bearer " + users.create_token(store, "admin", "/")}
    b_silence = client.post("/api/v1/silences", headers=root, json={
        "reason": "七里河区线路割接", "point": POINT_B, "duration": "2h"}).json()["id"]
    for who in ("viewer", "reviewer", "admin", "viewer(session)"):
        h = principals[who]
        checks = {
            f"/api/v1/alerts?point={POINT_B}&state=all": lambda r: r.json()["alerts"] == [],
            f"/api/v1/alerts?region={COUNTY_B}&state=all": lambda r: r.json()["alerts"] == [],
            f"/api/v1/points?region={COUNTY_B}": lambda r: r.json()["points"] == [],
            "/api/v1/silences?expired=true": lambda r: all(s["id"] != b_silence for s in r.json()["silences"]),
            f"/api/v1/scores?region={COUNTY_B}": lambda r: r.status_code == 404,
            f"/api/v1/scores/{POINT_B}": lambda r: r.status_code == 404,
            f"/api/v1/evidence/points/{POINT_B}.zip?from=2026-01-01&to=2026-01-02":
                lambda r: r.status_code in (403, 404),
            f"/api/v1/evidence/region.zip?region={COUNTY_B}&from=2026-01-01&to=2026-01-02":
                lambda r: r.status_code in (403, 404),
            f"/ui/points/{POINT_B}/series": lambda r: r.status_code == 404,
            f"/points/{POINT_B}": lambda r: r.status_code == 404,
            f"/?region={COUNTY_B}": lambda r: POINT_B not in r.text,
            f"/scores?region={COUNTY_B}": lambda r: POINT_B not in r.text,
        }
        for url, ok in checks.items():
            r = client.get(url, headers=h)
            assert r.status_code < 500 and ok(r), f"{who} GET {url}: {r.status_code} {r.text[:200]}"
            assert "七里河区秘密服务点" not in r.text, f"{who} GET {url} shows the other county's point"
    admin_a = principals["admin"]
    assert client.delete(f"/api/v1/silences/{b_silence}", headers=admin_a).status_code == 404
    r = client.post(f"/alerts/silence/{b_silence}/expire", headers=principals["admin(session)"])
    assert r.status_code == 404
    r = client.post("/alerts/silence", headers=principals["admin(session)"],
                    data={"point": POINT_B, "reason": "越权屏蔽", "duration": "2h"})
    assert r.status_code == 404
    assert client.get("/api/v1/silences", headers=root).json()["silences"][0]["expired_by"] is None


def test_one_points_token_cannot_write_anothers_reports(world):
    app, client, principals = world
    store = app.state.store
    own = report_to_dict(make_report(point_code=POINT_A, seq=1))
    other = report_to_dict(make_report(point_code=POINT_B, seq=1))
    for body in (other, {"reports": [own, other]}):
        r = client.post("/api/v1/reports", json=body, headers=principals["agent"])
        assert r.status_code == 403 and POINT_B in r.text
    assert queries.latest_for_point(store, POINT_A) == [] and queries.latest_for_point(store, POINT_B) == []
    for role in ("viewer", "reviewer", "admin", "admin(session)"):
        r = client.post("/api/v1/reports", json=own, headers=principals[role])
        assert r.status_code in (401, 403), role


# README, Security, Headers — stated here as the README states them, not read from collector.app.CSP.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
       "base-uri 'self'; form-action 'self'")
EXPECTED_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
}


def test_security_headers_on_every_response(world):
    app, client, principals = world
    urls = {"/login", "/docs", "/openapi.json", "/static/app.css", "/static/docs-init.js", "/no/such/page",
            "/healthz", "/metrics", "/api/v1/points/%00", "/api/v1/points?region=" + "x" * 500}
    for route, method in [*endpoints(app, ui=False), *endpoints(app, ui=True)]:
        if method == "GET":
            urls.add(fill(route.path, POINT_A))
    failures = []
    for url in sorted(urls):
        for who in ("anonymous", "viewer", "admin(session)", "agent"):
            r = client.get(url, headers=principals[who])
            for name, value in EXPECTED_HEADERS.items():
                if r.headers.get(name) != value:
                    failures.append(f"GET {url} as {who} ({r.status_code}): {name}={r.headers.get(name)!r}")
    r = client.post("/api/v1/reports", content=b"{", headers=principals["agent"])
    if r.headers.get("content-security-policy") != CSP:
        failures.append("POST /api/v1/reports (422) lacks the CSP")
    assert not failures, "\n".join(failures[:40])
    assert "'unsafe-inline'" not in CSP and "frame-ancestors 'none'" in CSP


def test_docs_page_has_no_inline_script(world):
    _, client, _ = world
    html = client.get("/docs").text
    import re

    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all('src="/static/' in attrs and not body.strip() for attrs, body in scripts), scripts
    assert client.get("/static/docs-init.js").status_code == 200


def test_the_login_step_audits_who_from_where_and_why_and_refuses_what_no_one_is(site):
    """The login step itself (collector/accounts/login.py) as docs/en/operations.md ("Login brute force")
    states it: every refused attempt is a ``login.failed`` entry naming the username and the address, with
    reason ``password`` (failures so far, lock length) or ``locked``; an unknown user is refused like a
    wrong password; the right password during a lock is refused too."""
    from collector.accounts.login import login as check_login
    from collector.accounts.throttle import LoginLocked

    _, store, _ = site
    assert check_login(store, "xxk", "wrong-1", "192.0.2.9") is None
    entry = failed_logins(store, "xxk")[0]
    assert entry["details"] == {"reason": "password", "failures": 1}
    assert (entry["actor"], entry["source"], entry["region"]) == ("user:xxk", "192.0.2.9", COUNTY_A)
    cookie, who = check_login(store, " xxk ", PASSWORD, "192.0.2.9")  # the spaces around are no part of a name
    assert cookie and (who.role, who.region_path) == ("viewer", COUNTY_A)
    assert check_login(store, "nobody", PASSWORD, "192.0.2.9") is None
    assert failed_logins(store, "nobody")[0]["region"] == "/"
    assert check_login(store, "xx\x00k", PASSWORD) is None and check_login(store, "xxk", "pass\ud800") is None
    assert check_login(store, "xxk", "") is None
    users.set_disabled(store, "xxk", True)
    assert check_login(store, "xxk", PASSWORD) is None  # a stopped account: the right password opens nothing
    users.set_disabled(store, "xxk", False)
    assert check_login(store, "xxk", "wrong-4") is None  # the 4th since the success
    with pytest.raises(LoginLocked) as locked:
        check_login(store, "xxk", "wrong-5")  # the 5th failure since the success
    assert locked.value.retry_after_s == 30
    with pytest.raises(LoginLocked):
        check_login(store, "xxk", PASSWORD)
    newest, before = failed_logins(store, "xxk")[:2]
    assert newest["details"] == {"reason": "locked", "retry_after_s": 30} and newest["actor"] == "user:xxk"
    assert before["details"] == {"reason": "password", "failures": 5, "locked_s": 30}
