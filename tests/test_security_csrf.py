"""Issue 18, item 9: CSRF. A page on another port of the collector's host is "same site", so SameSite=Lax
let it post /alerts/silence with the admin's cookie and create a 90-day silence. Every state-changing
form now needs the collector's own Origin (or Referer) and the session's token; login too (a pre-session
token); cookie-authenticated API writes need X-CSRF-Token; bearer-token calls are unaffected."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from collector.accounts import users
from collector.api.csrf import session_token
from collector.app import create_app
from collector.settings import Settings
from collector.store import audit, points
from collector.store.alerts import list_silences
from tests.helpers import ORIGIN, login_form_token, session_headers, web_login

COUNTY = "甘肃省/兰州市/城关区"
POINT = "620102001001"
PW = "village-clinic-2026"
EVIL = "http://testserver:8081"  # same host, another port: same site, another origin
WEB = Path(__file__).resolve().parents[1] / "collector" / "web"


@pytest.fixture
def site(store, tmp_path):
    points.upsert_point(store, POINT, "某村医保服务点", COUNTY + "/某镇/某村")
    users.create_user(store, "admin1", PW, "admin", COUNTY, person="张三")
    app = create_app(Settings(data_dir=tmp_path / "data"), store=store)
    client = TestClient(app, follow_redirects=False)
    assert web_login(client, "admin1", PW).status_code == 303
    return client, store


def _silences(store):
    return list_silences(store, "/", datetime.now(timezone.utc))


def test_a_same_site_page_cannot_post_the_admins_forms(site):
    client, store = site
    form = {"point": POINT, "reason": "维护中", "duration": "2h"}
    token = session_token(client.cookies["pw_session"])
    attempts = [
        ({"Origin": EVIL}, form),  # the attack as reproduced: the cookie rides along, nothing else
        ({"Origin": EVIL}, {**form, "csrf_token": token}),  # even holding the token: wrong origin
        ({"Referer": EVIL + "/page"}, {**form, "csrf_token": token}),
        ({}, {**form, "csrf_token": token}),  # neither Origin nor Referer
        ({"Origin": "null"}, {**form, "csrf_token": token}),  # a sandboxed frame
        ({"Origin": ORIGIN}, form),  # our origin but no token
        ({"Origin": ORIGIN}, {**form, "csrf_token": "0" * 64}),
    ]
    for headers, data in attempts:
        r = client.post("/alerts/silence", data=data, headers=headers)
        assert r.status_code == 403, (headers, r.status_code)
    assert _silences(store) == []
    r = client.post("/alerts/silence", data={**form, "csrf_token": token}, headers={"Origin": ORIGIN})
    assert r.status_code == 303 and len(_silences(store)) == 1
    silence_id = _silences(store)[0].id
    r = client.post(f"/alerts/silence/{silence_id}/expire", headers={"Origin": EVIL})
    assert r.status_code == 403 and len(_silences(store)) == 1
    r = client.post(f"/alerts/silence/{silence_id}/expire", data={"csrf_token": token},
                    headers={"Referer": ORIGIN + "/alerts"})  # a browser that sends Referer only
    assert r.status_code == 303 and _silences(store) == []
    assert client.post("/logout", headers={"Origin": EVIL}).status_code == 403  # signing out is a write too
    assert client.get("/api/v1/me").status_code == 200


def test_cookie_api_writes_need_the_header_bearer_calls_do_not(site):
    client, store = site
    body = {"role": "viewer", "region": COUNTY, "person": "大屏"}
    assert client.post("/api/v1/tokens", json=body, headers={"Origin": ORIGIN}).status_code == 403
    assert client.post("/api/v1/tokens", json=body, headers={"Origin": EVIL, **{
        "X-CSRF-Token": session_token(client.cookies["pw_session"])}}).status_code == 403
    assert client.post("/api/v1/tokens", json=body, headers=session_headers(client)).status_code == 201
    assert client.get("/api/v1/points").status_code == 200  # reads need nothing
    bearer = {"Authorization": "Bearer " + users.create_token(store, "admin", COUNTY, person="王五")}
    plain = TestClient(client.app)
    assert plain.post("/api/v1/tokens", json=body, headers=bearer).status_code == 201


def test_login_csrf_needs_our_origin_and_the_pre_session_token(store, tmp_path):
    users.create_user(store, "attacker", PW, "viewer", COUNTY, person="坏人")
    client = TestClient(create_app(Settings(data_dir=tmp_path / "data"), store=store), follow_redirects=False)
    creds = {"username": "attacker", "password": PW}
    assert client.post("/login", data=creds, headers={"Origin": EVIL}).status_code == 403
    token = login_form_token(client)
    assert client.post("/login", data={**creds, "csrf_token": token}, headers={"Origin": EVIL}).status_code == 403
    assert client.post("/login", data=creds, headers={"Origin": ORIGIN}).status_code == 403
    assert client.post("/login", data={**creds, "csrf_token": "x" * 32}, headers={"Origin": ORIGIN}).status_code == 403
    assert "pw_session" not in client.cookies
    assert not audit.audit_entries(store, "/", 5, None, "login")
    r = client.post("/login", data={**creds, "csrf_token": token}, headers={"Origin": ORIGIN})
    assert r.status_code == 303 and "pw_session" in client.cookies


def test_every_post_form_renders_the_token_and_the_pages_scripts_send_it():
    for template in sorted((WEB / "templates").glob("*.html")):
        for form in re.findall(r"<form\b[^>]*>.*?</form>", template.read_text(encoding="utf-8"), re.S):
            if re.search(r'method="post"', form, re.I):
                assert 'name="csrf_token"' in form, (template.name, form[:120])
    static = WEB / "static"
    assert "X-CSRF-Token" in (static / "docs-init.js").read_text(encoding="utf-8")
    for script in ("app.js", "charts.js"):  # they only read: a fetch with a method would need the header
        text = (static / script).read_text(encoding="utf-8")
        assert not re.search(r"method\s*:", text) or "X-CSRF-Token" in text, script
