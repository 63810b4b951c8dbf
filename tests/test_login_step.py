"""The login step (collector/accounts/login.py) called directly, with the throttle's clock moved by the test:
what collector/accounts/throttle.py's docstring and docs/en/operations.md ("Login brute force", "People")
promise of it, each held where the HTTP tests (tests/test_security_auth.py) cannot reach it cheaply.

- a lock refuses every attempt until its very last moment, and the refusal is audited with the address;
- the address limit (20 from one source within 15 minutes) counts across usernames and locks a real user
  too, and a success clears the username's count but not the address's;
- a username is counted and audited by the 60 characters a username can have (users.py refuses longer
  ones), so padding a name does not buy an attacker fresh attempts;
- a session records the address it was opened from; a password hash with outdated argon2 parameters is
  replaced on login by one with the current parameters (passwords are argon2id), a current one is kept;
- an unknown username is refused even when its password is the stand-in hash's own secret.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from collector.accounts import login as login_step
from collector.accounts import users
from collector.accounts.throttle import LoginLocked, login_throttle
from collector.store import audit, models, people

PASSWORD = "village-clinic-2026"
COUNTY = "甘肃省/兰州市/城关区"
ADDRESS, OTHER_ADDRESS = "192.0.2.7", "198.51.100.3"


class Clock:
    def __init__(self):
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(store):
    users.create_user(store, "xxk", PASSWORD, "viewer", COUNTY)
    tick = Clock()
    login_throttle(store).clock = tick
    return tick


def refusals(store, target: str) -> list[dict]:
    """The ``login.failed`` entries naming ``target``, newest first."""
    return [e for e in audit.audit_entries(store, "/", 1000, None, "login.failed") if e["target"] == target]


def test_a_lock_holds_to_its_last_moment_and_its_refusal_names_the_address(store, clock):
    for n in range(1, 5):
        assert login_step.login(store, "xxk", f"wrong-{n}", ADDRESS) is None
    with pytest.raises(LoginLocked) as first:
        login_step.login(store, "xxk", "wrong-5", ADDRESS)  # the 5th failure: a 30 s lock
    assert first.value.retry_after_s == 30
    clock.now += 29.5
    with pytest.raises(LoginLocked) as late:
        login_step.login(store, "xxk", PASSWORD, ADDRESS)  # half a second of the lock left: still refused
    assert late.value.retry_after_s == pytest.approx(0.5)
    newest = refusals(store, "user:xxk")[0]
    assert (newest["actor"], newest["source"], newest["region"]) == ("user:xxk", ADDRESS, "/")
    assert newest["details"] == {"reason": "locked", "retry_after_s": 0}  # 0.5 s, rounded to whole seconds
    clock.now += 0.5
    cookie, who = login_step.login(store, "xxk", PASSWORD, ADDRESS)  # the lock is over
    assert cookie and who.actor == "user:xxk"


def test_one_address_is_limited_across_usernames_and_a_success_does_not_clear_it(store, clock):
    for n in range(19):  # 19 unknown names, each far below its own limit of 5
        assert login_step.login(store, f"guess{n}", "x", ADDRESS) is None
    assert login_step.login(store, "xxk", PASSWORD, ADDRESS)  # a success clears the username's count only
    with pytest.raises(LoginLocked) as locked:
        login_step.login(store, "guess19", "x", ADDRESS)  # the 20th failure from the address
    assert locked.value.retry_after_s == 30
    with pytest.raises(LoginLocked):
        login_step.login(store, "xxk", PASSWORD, ADDRESS)  # the address is locked for every name
    assert refusals(store, "user:xxk")[0]["details"] == {"reason": "locked", "retry_after_s": 30}
    cookie, _ = login_step.login(store, "xxk", PASSWORD, OTHER_ADDRESS)  # the user from elsewhere gets in
    assert cookie


def test_a_username_counts_by_the_sixty_characters_a_username_can_have(store, clock):
    name = "z" * 60  # the longest username users.py accepts
    users.create_user(store, name, PASSWORD, "viewer", COUNTY)
    for n in range(1, 5):
        assert login_step.login(store, name + f"-padding-{n}", "wrong", f"203.0.113.{n}") is None
    entries = refusals(store, f"user:{name}")
    assert [e["details"]["failures"] for e in entries] == [4, 3, 2, 1]  # one count, one name in the log
    assert all(e["region"] == COUNTY for e in entries)
    with pytest.raises(LoginLocked):
        login_step.login(store, name + "-more", "wrong", "203.0.113.9")  # the 5th for the 60-character name
    with pytest.raises(LoginLocked):
        login_step.login(store, name, PASSWORD, "203.0.113.10")


def test_a_missing_username_is_refused_and_audited_as_an_empty_name(store, clock):
    assert login_step.login(store, None, PASSWORD, ADDRESS) is None
    (entry,) = refusals(store, "user:")
    assert entry["details"] == {"reason": "password", "failures": 1} and entry["source"] == ADDRESS


def test_a_session_records_where_it_was_opened_from(store, clock):
    cookie, who = login_step.login(store, "xxk", PASSWORD, ADDRESS)
    assert (who.role, who.region_path, who.via) == ("viewer", COUNTY, "session")
    assert people.session_info(store, cookie).actor == "user:xxk"
    with store.session() as s:
        (session,) = s.scalars(select(models.WebSession)).all()
        assert session.source == ADDRESS
    (opened,) = audit.audit_entries(store, "/", 10, None, "login")
    assert (opened["actor"], opened["source"]) == ("user:xxk", ADDRESS)


def stored_hash(store, username: str) -> str:
    with store.session() as s:
        return s.scalars(select(models.User.password_hash).where(models.User.username == username)).one()


def test_an_outdated_password_hash_is_replaced_on_login_and_a_current_one_kept(store, clock):
    from argon2 import PasswordHasher

    current = stored_hash(store, "xxk")
    assert login_step.login(store, "xxk", PASSWORD, ADDRESS)
    assert stored_hash(store, "xxk") == current  # already argon2id with today's parameters: left as it is

    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)  # weaker parameters
    with store.write_session() as s:
        s.scalars(select(models.User).where(models.User.username == "xxk")).one().password_hash = old
    assert users.hasher().check_needs_rehash(old)
    assert login_step.login(store, "xxk", PASSWORD, ADDRESS)
    renewed = stored_hash(store, "xxk")
    assert renewed != old and renewed.startswith("$argon2id$")
    assert not users.hasher().check_needs_rehash(renewed) and users.hasher().verify(renewed, PASSWORD)
    assert login_step.login(store, "xxk", PASSWORD, ADDRESS)  # the new hash opens the account


def test_an_unknown_username_is_refused_even_with_the_stand_in_hashs_own_secret(store, clock):
    saved = list(login_step._DUMMY)
    login_step._DUMMY[:] = [users.hasher().hash("known-secret")]  # as if the stand-in's secret were guessed
    try:
        assert login_step.login(store, "nobody", "known-secret", ADDRESS) is None
    finally:
        login_step._DUMMY[:] = saved
    assert refusals(store, "user:nobody")[0]["details"] == {"reason": "password", "failures": 1}
