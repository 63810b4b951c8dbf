"""Issue 18, item 8: a compromised account can be stopped. Disable (sessions end, its tokens are revoked,
at once in this process and within TOKEN_CACHE_S elsewhere), enable, password reset by an admin of the
region, the user's own change with the old password, and "end all sessions" — each audited, through the
API (admins, their region) and the command line."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from collector import cli
from collector.accounts import users
from collector.app import create_app
from collector.settings import Settings
from collector.store import Store, audit, people
from tests.helpers import session_headers, web_login

COUNTY, OTHER = "甘肃省/兰州市/城关区", "甘肃省/兰州市/七里河区"
PW, NEW_PW = "village-clinic-2026", "new-secret-2026"


@pytest.fixture
def site(store, tmp_path):
    app = create_app(Settings(data_dir=tmp_path / "data"), store=store)
    users.create_user(store, "mallory", PW, "admin", COUNTY, person="马六")
    users.create_user(store, "xxk", PW, "viewer", COUNTY + "/某镇", person="小许")
    users.create_user(store, "far", PW, "viewer", OTHER, person="远方")
    users.create_user(store, "rev", PW, "reviewer", COUNTY, person="李四")
    admin = {"Authorization": "Bearer " + users.create_token(store, "admin", COUNTY, person="张三")}
    return app, store, admin


def _session(app, username, password=PW) -> TestClient:
    client = TestClient(app, follow_redirects=False)
    assert web_login(client, username, password).status_code == 303
    return client


def test_disabling_a_stolen_admin_account_stops_its_sessions_and_the_tokens_it_minted(site):
    app, store, admin = site
    api = TestClient(app)
    thief = _session(app, "mallory")  # the attacker's session on the stolen account...
    r = thief.post("/api/v1/tokens", json={"role": "admin", "region": COUNTY, "person": "马六"},
                   headers=session_headers(thief))
    assert r.status_code == 201, r.text
    backdoor = {"Authorization": "Bearer " + r.json()["token"]}  # ...and the token it left behind
    assert api.get("/api/v1/me", headers=backdoor).status_code == 200  # now cached in this process
    r = api.post("/api/v1/users/mallory/disable", headers=admin)
    assert r.status_code == 200 and r.json()["sessions_ended"] == 1 and len(r.json()["tokens_revoked"]) == 1
    assert thief.get("/api/v1/me").status_code == 401
    assert api.get("/api/v1/me", headers=backdoor).status_code == 401  # at once, despite the cache
    other = Store(store.url)  # another collector on the same database
    try:
        assert people.authenticate(other, backdoor["Authorization"][7:]) is None
    finally:
        other.close()
    assert web_login(TestClient(app), "mallory", PW).status_code == 401  # the right password, refused
    assert api.post("/api/v1/users/mallory/disable", headers=admin).status_code == 409  # once is on record
    entry = audit.audit_entries(store, "/", 1, None, "user.disable")[0]
    assert entry["target"] == "user:mallory" and entry["actor"].startswith("token:") and entry["source"]
    assert api.post("/api/v1/users/mallory/enable", headers=admin).status_code == 200
    assert _session(app, "mallory").get("/api/v1/me").status_code == 200
    assert audit.audit_entries(store, "/", 5, None, "user.enable")


def test_admins_act_only_on_users_of_their_region_and_only_admins(site):
    app, store, admin = site
    api = TestClient(app)
    for path in ("/api/v1/users/far/disable", "/api/v1/users/far/end-sessions", "/api/v1/users/nobody/enable"):
        assert api.post(path, headers=admin).status_code == 404
    assert api.put("/api/v1/users/far/password", json={"password": NEW_PW}, headers=admin).status_code == 404
    viewer = {"Authorization": "Bearer " + users.create_token(store, "viewer", COUNTY, person="小许")}
    assert api.post("/api/v1/users/xxk/disable", headers=viewer).status_code == 403
    assert api.post("/api/v1/users/xxk/bogus", headers=admin).status_code in (404, 405)
    # A reviewer's password is not the admin's to set (it could sign in as the reviewer): the CLI's.
    r = api.put("/api/v1/users/rev/password", json={"password": NEW_PW}, headers=admin)
    assert r.status_code == 409 and r.json()["detail"]["code"] == "duty_conflict"
    assert api.post("/api/v1/users/rev/disable", headers=admin).status_code == 200  # stopping it is fine


def test_password_reset_and_own_change_end_sessions_and_are_audited(site):
    app, store, admin = site
    api = TestClient(app)
    first, second = _session(app, "xxk"), _session(app, "xxk")
    r = api.put("/api/v1/users/xxk/password", json={"password": NEW_PW}, headers=admin)
    assert r.status_code == 200 and r.json()["sessions_ended"] == 2
    assert first.get("/api/v1/me").status_code == 401 and second.get("/api/v1/me").status_code == 401
    mine, elsewhere = _session(app, "xxk", NEW_PW), _session(app, "xxk", NEW_PW)
    csrf = session_headers(mine)
    r = mine.put("/api/v1/me/password", json={"old_password": "wrong-guess", "new_password": PW}, headers=csrf)
    assert r.status_code == 403
    r = mine.put("/api/v1/me/password", json={"old_password": NEW_PW, "new_password": PW}, headers=csrf)
    assert r.status_code == 200 and r.json()["sessions_ended"] == 1
    assert mine.get("/api/v1/me").status_code == 200 and elsewhere.get("/api/v1/me").status_code == 401
    assert [e["details"]["how"] for e in audit.audit_entries(store, "/", 5, None, "user.password")] == ["self", "reset"]
    again = _session(app, "xxk")
    assert api.post("/api/v1/users/xxk/end-sessions", headers=admin).json()["sessions_ended"] == 2
    assert again.get("/api/v1/me").status_code == 401 and mine.get("/api/v1/me").status_code == 401
    assert audit.audit_entries(store, "/", 1, None, "user.end_sessions")[0]["details"]["sessions_ended"] == 2


def test_enabling_again_keeps_the_duty_split(site):
    _, store, admin = site
    users.set_disabled(store, "rev", True)
    users.create_token(store, "admin", COUNTY, person="李四")  # 李四 holds no reviewer role while disabled
    with pytest.raises(Exception) as e:
        users.set_disabled(store, "rev", False)
    assert getattr(e.value, "code", "") == "duty_conflict"


def test_the_command_line_disables_enables_resets_and_ends_sessions(db_url, monkeypatch, capsys):
    import io

    monkeypatch.setenv("POINTWATCH_DATABASE_URL", db_url)
    assert cli.main(["db", "upgrade"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(PW + "\n"))
    assert cli.main(["users", "create", "--username", "xxk", "--role", "viewer", "--person", "小许",
                     "--password-stdin"]) == 0
    store = Store(db_url)
    try:
        from collector.accounts import login

        login.login(store, "xxk", PW)
        assert cli.main(["users", "end-sessions", "xxk"]) == 0
        assert cli.main(["users", "disable", "xxk"]) == 0
        assert login.login(store, "xxk", PW) is None
        assert cli.main(["users", "disable", "xxk"]) == 1  # already
        assert cli.main(["users", "enable", "xxk"]) == 0
        monkeypatch.setattr("sys.stdin", io.StringIO(NEW_PW + "\n"))
        assert cli.main(["users", "reset-password", "xxk", "--password-stdin"]) == 0
        assert login.login(store, "xxk", NEW_PW) is not None
        assert cli.main(["users", "disable", "nobody"]) == 1
        out = capsys.readouterr()
        assert "已停用" in out.out and "没有用户“nobody”" in out.err
        actions = [e["action"] for e in audit.audit_entries(store, "/", 20, None, None) if e["target"] == "user:xxk"]
        assert {"user.end_sessions", "user.disable", "user.enable", "user.password"} <= set(actions)
        assert all(e["actor"].startswith("cli:") for e in audit.audit_entries(store, "/", 4, None, "user.disable"))
    finally:
        store.close()
