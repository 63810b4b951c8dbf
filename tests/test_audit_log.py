"""The audit log: who/what/when/where for every non-agent write and export, hash-chained, verifiable."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

from sqlalchemy import text

from collector.accounts import login as accounts_login
from collector.accounts import users
from collector.store import audit, enrolment, people, points
from collector.store import models as m
from collector.store.audit import Actor
from tests.helpers import ORIGIN, session_headers, web_login

REGION = "甘肃省/兰州市/城关区"


def test_writes_are_audited_with_actor_and_source(store):
    admin = Actor("user:admin1", "10.1.2.3")
    points.upsert_point(store, "620102001001", "某村", REGION + "/某镇/某村", actor=admin)
    users.create_user(store, "viewer1", "correct horse", "viewer", REGION, person="查看员", actor=admin)
    users.create_token(store, "viewer", REGION, description="grafana", person="看板", actor=admin)
    enrolment.create_enroll_code(store, "620102001001", actor=admin)
    assert accounts_login.login(store, "viewer1", "wrong password", "10.9.9.9") is None
    cookie, _ = accounts_login.login(store, "viewer1", "correct horse", "10.9.9.9")
    people.logout(store, cookie, "10.9.9.9")
    actions = [e["action"] for e in reversed(audit.audit_entries(store))]
    assert actions == ["point.upsert", "user.create", "token.create", "enroll_code.create", "login.failed",
                       "login", "logout"]
    newest = audit.audit_entries(store, limit=1)[0]
    assert newest["actor"] == "user:viewer1" and newest["source"] == "10.9.9.9" and newest["region"] == REGION
    assert audit.audit_entries(store, action="user.create")[0]["source"] == "10.1.2.3"
    assert audit.verify_audit(store).ok and audit.verify_audit(store).entries == 7


def test_region_scope_filters_entries(store):
    users.create_user(store, "a", "password-1", "viewer", REGION)
    users.create_user(store, "b", "password-2", "viewer", "甘肃省/兰州市/七里河区")
    assert [e["target"] for e in audit.audit_entries(store, REGION)] == ["user:a"]
    assert len(audit.audit_entries(store, "/")) == 2


def test_verification_finds_an_edited_a_removed_and_an_inserted_entry(store):
    for i in range(5):
        users.create_user(store, f"u{i}", "password-x", "viewer", REGION)
    assert audit.verify_audit(store).ok
    ids = [e["id"] for e in reversed(audit.audit_entries(store))]
    # Inserted: an editor makes room after the third entry (moving the later ids up, which alone changes
    # nothing the chain covers) and slips in an entry of their own, its digest right for its content.
    table = m.AuditEntry.__table__
    with store.engine.begin() as conn:
        for i in reversed(ids[3:]):
            conn.execute(text("UPDATE audit_log SET id = :n WHERE id = :i"), {"n": i + 1000, "i": i})
    assert audit.verify_audit(store).ok and audit.verify_audit(store).entries == 5
    at = datetime(2026, 1, 5, 8, 0, tzinfo=timezone.utc)
    forged_prev = hashlib.sha256(b"not the entry before it").hexdigest()
    body = audit.entry_body(at, "user:admin1", "user.create", "user:ghost", {}, "10.1.2.3", REGION)
    with store.engine.begin() as conn:
        conn.execute(table.insert().values(
            id=ids[3], at=at, actor="user:admin1", action="user.create", target="user:ghost", details={},
            source="10.1.2.3", region_path=REGION, prev_digest=forged_prev,
            digest=hashlib.sha256((forged_prev + "\n" + body).encode("utf-8")).hexdigest()))
    check = audit.verify_audit(store)
    assert not check.ok and check.first_bad_id == ids[3] and "inserted" in check.problem
    assert check.entries == 3  # the three entries before it verified
    with store.engine.begin() as conn:  # taken out again: the chain is whole (the moved ids are not a break)
        conn.execute(text("DELETE FROM audit_log WHERE id = :i"), {"i": ids[3]})
    assert audit.verify_audit(store).ok
    ids = ids[:3] + [i + 1000 for i in ids[3:]]
    with store.engine.begin() as conn:  # an editor with database access, bypassing every API
        conn.execute(text("UPDATE audit_log SET actor = 'someone-else' WHERE id = :i"), {"i": ids[2]})
    check = audit.verify_audit(store)
    assert not check.ok and check.first_bad_id == ids[2] and "edited" in check.problem
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE id = :i"), {"i": ids[2]})
    check = audit.verify_audit(store)
    assert not check.ok and check.first_bad_id == ids[3] and "removed" in check.problem


def test_concurrent_appends_keep_one_chain(store):
    import threading

    errors = []

    def work(n):
        try:
            for i in range(5):
                audit.record(store, Actor(f"user:t{n}"), "test.event", f"n{n}-{i}")
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    check = audit.verify_audit(store)
    assert check.ok and check.entries == 20


def test_one_person_is_one_actor_whatever_the_door(store, tmp_path):
    """alice logging in, silencing through the JSON API with her session cookie and through the page's form
    is one actor in the log; an API token stays a token."""
    from fastapi.testclient import TestClient

    from collector.app import create_app
    from collector.settings import Settings

    point = "620102001001"
    points.upsert_point(store, point, "城关区某点", REGION + "/某镇/某村")
    users.create_user(store, "alice", "correct horse", "admin", REGION)
    token = users.create_token(store, "admin", region_path=REGION)
    with TestClient(create_app(Settings(data_dir=tmp_path / "data"), store=store)) as client:
        assert web_login(client, "alice", "correct horse").status_code == 303
        assert client.post("/api/v1/silences", json={"reason": "更换硒鼓", "point": point, "duration": "2h"},
                           headers=session_headers(client)).status_code == 201
        assert client.post("/alerts/silence", data={"point": point, "reason": "现场核查", "duration": "2h",
                                                    "csrf_token": session_headers(client)["X-CSRF-Token"]},
                           headers={"Origin": ORIGIN}, follow_redirects=False).status_code == 303
        client.cookies.clear()
        assert client.post("/api/v1/silences", json={"reason": "脚本屏蔽", "point": point, "duration": "2h"},
                           headers={"Authorization": f"Bearer {token}"}).status_code == 201
    entries = audit.audit_entries(store, REGION, 50)
    by_person = [(e["action"], e["actor"]) for e in entries if e["action"] in ("login", "silence.create")]
    token_id = next(e["target"] for e in entries if e["action"] == "token.create")
    assert sorted(by_person) == sorted([("login", "user:alice"), ("silence.create", "user:alice"),
                                        ("silence.create", "user:alice"), ("silence.create", token_id)])
