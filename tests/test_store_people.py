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
