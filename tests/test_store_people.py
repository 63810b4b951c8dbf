"""Users, sessions, tokens and the 操作、管理、监督 duty split."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from collector.store import StoreError
from collector.store import models as m

COUNTY = "甘肃省/兰州市/城关区"


def test_passwords_and_secrets_are_stored_only_as_hashes(store):
    store.create_user("alice", "s3cret-pass", "viewer", COUNTY)
    token = store.create_token("viewer", COUNTY)
    cookie, info = store.login("alice", "s3cret-pass")
    assert info.role == "viewer" and info.region_path == COUNTY and info.actor == "user:alice"
    with store.session() as s:
        user = s.scalar(select(m.User))
        assert user.password_hash.startswith("$argon2id$") and "s3cret" not in user.password_hash
        assert s.scalar(select(m.WebSession.id_hash)) != cookie
        assert token not in [t for (t,) in s.execute(select(m.ApiToken.token_hash))]
    assert store.session_info(cookie).actor == "user:alice"
    assert store.authenticate(token).region_path == COUNTY
    assert store.login("alice", "wrong") is None and store.login("nobody", "s3cret-pass") is None
    assert store.logout(cookie)
    assert store.session_info(cookie) is None


def test_expired_sessions_are_refused_and_pruned(store):
    from datetime import timedelta

    from collector.store import utcnow

    store.create_user("bob", "long-enough", "viewer", COUNTY)
    cookie, _ = store.login("bob", "long-enough")
    with store.session() as s:
        s.scalar(select(m.WebSession)).expires_at = utcnow() - timedelta(seconds=1)
    assert store.session_info(cookie) is None
    assert store.prune(__import__("collector.store.retention", fromlist=["x"]).RetentionPolicy())["sessions"] == 1


def test_user_rules(store):
    with pytest.raises(StoreError, match="至少"):
        store.create_user("short", "1234", "viewer", COUNTY)
    with pytest.raises(StoreError) as e:
        store.create_user("ag", "long-enough", "agent", COUNTY)
    assert e.value.code == "bad_role"
    store.create_user("carol", "long-enough", "viewer", COUNTY)
    with pytest.raises(StoreError) as e:
        store.create_user("carol", "long-enough", "admin", COUNTY)  # one username, one role
    assert e.value.code == "user_exists"
    with pytest.raises(StoreError) as e:
        store.create_user("x", "long-enough", "viewer", "a/b/c/d/e/f")
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
    store.create_user("zhang-admin", "long-enough", first[0], first[1], person="张三")
    if conflict:
        with pytest.raises(StoreError) as e:
            store.create_user("zhang-2", "long-enough", second[0], second[1], person="张三")
        assert e.value.code == "duty_conflict" and "操作、管理、监督" in str(e.value)
        with pytest.raises(StoreError):  # a token for the same person is refused the same way
            store.create_token(second[0], second[1], person="张三")
    else:
        store.create_user("zhang-2", "long-enough", second[0], second[1], person="张三")
    # Someone else may always take the other role.
    store.create_user("li-si", "long-enough", second[0], second[1], person="李四")


def test_a_revoked_agent_token_stops_at_once_here_and_on_a_fresh_collector(store):
    store.upsert_point("620102001001", "某村医保服务点", COUNTY)
    code = store.create_enroll_code("620102001001")
    agent_id, token = store.enroll(code, "620102001001", "YB-PC", {"machine_id": "m"})
    assert store.authenticate(token).agent_id == agent_id  # now cached in this process
    listed = {t["agent_id"]: t for t in store.list_tokens()}
    token_id = listed[agent_id]["id"]
    assert listed[agent_id]["revoked"] is False and listed[agent_id]["point"] == "620102001001"

    revoked = store.revoke_token(token_id)
    assert revoked == {"id": token_id, "role": "agent", "point": "620102001001", "region": COUNTY}
    assert store.authenticate(token) is None  # the cache of the revoking process is dropped
    other = type(store)(store.url)  # another collector process: nothing cached
    try:
        assert other.authenticate(token) is None
    finally:
        other.close()
    assert [t["revoked"] for t in store.list_tokens() if t["id"] == token_id] == [True]
    with store.session() as s:
        assert s.get(m.Agent, agent_id).revoked
        entry = s.scalar(select(m.AuditEntry).where(m.AuditEntry.action == "token.revoke"))
        assert entry.target == f"token:{token_id}"
    assert store.verify_audit().ok
    with pytest.raises(StoreError, match="已经吊销"):
        store.revoke_token(token_id)
    with pytest.raises(StoreError, match="没有编号为 999999 的令牌"):
        store.revoke_token(999999)


def test_tokens_list_and_revoke_commands(db_url, monkeypatch, capsys):
    from collector import cli
    from collector.store import Store

    monkeypatch.setenv("POINTWATCH_DATABASE_URL", db_url)

    def run(*argv):
        code = cli.main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    assert run("db", "upgrade")[0] == 0
    code, token, _ = run("tokens", "create", "--role", "viewer", "--region", COUNTY, "--description", "大屏")
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
        assert store.authenticate(token.strip()) is None
    finally:
        store.close()
    code, _, err = run("tokens", "revoke", str(token_id))
    assert code == 1 and "已经吊销" in err
