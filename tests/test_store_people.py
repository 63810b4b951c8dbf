"""Users, sessions, tokens and the 操作、管理、监督 duty split."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from collector.accounts import login as accounts_login
from collector.accounts import users
from collector.store import StoreError, audit, enrolment, people, points, retention
from collector.store import models as m

COUNTY = "甘肃省/兰州市/城关区"


def test_passwords_and_secrets_are_stored_only_as_hashes(store):
    users.create_user(store, "alice", "s3cret-pass", "viewer", COUNTY)
    token = users.create_token(store, "viewer", COUNTY)
    cookie, info = accounts_login.login(store, "alice", "s3cret-pass")
    assert info.role == "viewer" and info.region_path == COUNTY and info.actor == "user:alice"
    with store.session() as s:
        user = s.scalar(select(m.User))
        assert user.password_hash.startswith("$argon2id$") and "s3cret" not in user.password_hash
        assert s.scalar(select(m.WebSession.id_hash)) != cookie
        assert token not in [t for (t,) in s.execute(select(m.ApiToken.token_hash))]
    assert people.session_info(store, cookie).actor == "user:alice"
    assert people.authenticate(store, token).region_path == COUNTY
    assert accounts_login.login(store, "alice", "wrong") is None and accounts_login.login(store, "nobody", "s3cret-pass") is None
    assert people.logout(store, cookie)
    assert people.session_info(store, cookie) is None


def test_expired_sessions_are_refused_and_pruned(store):
    from datetime import timedelta

    from collector.store import utcnow

    users.create_user(store, "bob", "long-enough", "viewer", COUNTY)
    cookie, _ = accounts_login.login(store, "bob", "long-enough")
    with store.session() as s:
        s.scalar(select(m.WebSession)).expires_at = utcnow() - timedelta(seconds=1)
    assert people.session_info(store, cookie) is None
    assert retention.prune(store, __import__("collector.store.retention", fromlist=["x"]).RetentionPolicy())["sessions"] == 1


def test_user_rules(store):
    with pytest.raises(StoreError, match="至少"):
        users.create_user(store, "short", "1234", "viewer", COUNTY)
    with pytest.raises(StoreError) as e:
        users.create_user(store, "ag", "long-enough", "agent", COUNTY)
    assert e.value.code == "bad_role"
    users.create_user(store, "carol", "long-enough", "viewer", COUNTY)
    with pytest.raises(StoreError) as e:
        users.create_user(store, "carol", "long-enough", "admin", COUNTY)  # one username, one role
    assert e.value.code == "user_exists"
    with pytest.raises(StoreError) as e:
        users.create_user(store, "x", "long-enough", "viewer", "a/b/c/d/e/f")
    assert e.value.code == "bad_region"


@pytest.mark.parametrize("first,second,conflict", [
    (("admin", COUNTY), ("reviewer", COUNTY), True),
    (("reviewer", COUNTY), ("admin", COUNTY), True),
    (("admin", "甘肃省"), ("reviewer", COUNTY + "/某镇"), True),  # above covers beneath
    (("reviewer", COUNTY + "/某镇"), ("admin", "/"), True),
    (("admin", COUNTY), ("reviewer", "甘肃省/兰州市/七里河区"), False),  # a different county
    (("admin", COUNTY), ("viewer", COUNTY), False),
])
def test_one_person_is_never_admin_and_reviewer_of_one_region(store, first, second, conflict):
    users.create_user(store, "zhang-admin", "long-enough", first[0], first[1], person="张三")
    if conflict:
        with pytest.raises(StoreError) as e:
            users.create_user(store, "zhang-2", "long-enough", second[0], second[1], person="张三")
        assert e.value.code == "duty_conflict" and "操作、管理、监督" in str(e.value)
        with pytest.raises(StoreError):  # a token for the same person is refused the same way
            users.create_token(store, second[0], second[1], person="张三")
    else:
        users.create_user(store, "zhang-2", "long-enough", second[0], second[1], person="张三")
    # Someone else may always take the other role.
    users.create_user(store, "li-si", "long-enough", second[0], second[1], person="李四")


def test_a_revoked_agent_token_stops_at_once_here_and_on_a_fresh_collector(store):
    points.upsert_point(store, "620102001001", "某村医保服务点", COUNTY)
    code = enrolment.create_enroll_code(store, "620102001001")
    agent_id, token = enrolment.enroll(store, code, "620102001001", "YB-PC", {"machine_id": "m"})
    assert people.authenticate(store, token).agent_id == agent_id  # now cached in this process
    listed = {t["agent_id"]: t for t in people.list_tokens(store)}
    token_id = listed[agent_id]["id"]
    assert listed[agent_id]["revoked"] is False and listed[agent_id]["point"] == "620102001001"

    revoked = users.revoke_token(store, token_id)
    assert revoked == {"id": token_id, "role": "agent", "point": "620102001001", "region": COUNTY}
    assert people.authenticate(store, token) is None  # the cache of the revoking process is dropped
    other = type(store)(store.url)  # another collector process: nothing cached
    try:
        assert people.authenticate(other, token) is None
    finally:
        other.close()
    assert [t["revoked"] for t in people.list_tokens(store) if t["id"] == token_id] == [True]
    with store.session() as s:
        assert s.get(m.Agent, agent_id).revoked
        entry = s.scalar(select(m.AuditEntry).where(m.AuditEntry.action == "token.revoke"))
        assert entry.target == f"token:{token_id}"
    assert audit.verify_audit(store).ok
    with pytest.raises(StoreError, match="已经吊销"):
        users.revoke_token(store, token_id)
    with pytest.raises(StoreError, match="没有编号为 999999 的令牌"):
        users.revoke_token(store, 999999)


def test_tokens_list_and_revoke_commands(db_url, monkeypatch, capsys):
    from collector import cli
    from collector.store import Store

    monkeypatch.setenv("POINTWATCH_DATABASE_URL", db_url)

    def run(*argv):
        code = cli.main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    assert run("db", "upgrade")[0] == 0
    code, token, _ = run("tokens", "create", "--role", "viewer", "--region", COUNTY, "--description", "大屏",
                         "--person", "大屏值班")
    assert code == 0 and token.strip().startswith("pw_")
    code, listing, _ = run("tokens", "list")
    (line,) = [row for row in listing.splitlines() if "大屏" in row]
    token_id = int(line.split("\t")[0])
    assert line.split("\t")[1:3] == ["viewer", COUNTY] and "\t有效\t" in line and "pw_" not in listing
    code, out, _ = run("tokens", "revoke", str(token_id))
    assert code == 0 and f"令牌 {token_id}" in out and "已吊销" in out
    assert "\t已吊销\t" in run("tokens", "list")[1]
    store = Store(db_url)
    try:
        assert people.authenticate(store, token.strip()) is None
    finally:
        store.close()
    code, _, err = run("tokens", "revoke", str(token_id))
    assert code == 1 and "已经吊销" in err
