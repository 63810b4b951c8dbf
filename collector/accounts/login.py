"""Logging in: the throttle decides whether a password is checked at all, argon2 checks it, the store
opens the session. Every refused attempt, locked or not, is a ``login.failed`` audit entry."""

from __future__ import annotations

import secrets
from datetime import timedelta

from collector.accounts.throttle import LoginLocked, login_throttle
from collector.accounts.users import has_unprintable, hasher, printable
from collector.store import TokenInfo, audit, people
from collector.store.audit import Actor

SESSION_TTL = timedelta(hours=12)
_DUMMY: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY:
        _DUMMY.append(hasher().hash(secrets.token_hex(8)))
    return _DUMMY[0]


def login(store, username: str, password: str, source: str | None = None) -> tuple[str, TokenInfo] | None:
    """Check a password; on success start a session and return (cookie value, who). None for a wrong
    password; raises :class:`LoginLocked` while this username or source is locked (password unchecked)."""
    from argon2.exceptions import InvalidHashError, VerificationError

    name = (username or "").strip()[:60]
    who = f"user:{printable(name)}"
    throttle = login_throttle(store)
    wait = throttle.retry_after(name, source)
    if wait > 0:
        audit.record(store, Actor(who, source), "login.failed", who,
                     {"reason": "locked", "retry_after_s": round(wait)})
        raise LoginLocked(wait)
    user = None
    usable = not has_unprintable(name) and not has_unprintable(password)
    if usable:  # else nobody's: PostgreSQL would refuse NUL in the query, argon2 a lone surrogate
        user = people.find_user(store, name)
    stored = user.password_hash if user is not None and not user.disabled else None
    ok = False
    try:
        # Hash something even for an unknown user, so timing does not reveal which usernames exist.
        ok = hasher().verify(stored or _dummy_hash(), password if usable else "") and stored is not None
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok:
        failures, lock = throttle.failed(name, source)
        details = {"reason": "password", "failures": failures}
        if lock:
            details["locked_s"] = round(lock)
        audit.record(store, Actor(who, source), "login.failed", who, details, user.region_path if user else "/")
        if lock:
            raise LoginLocked(lock)
        return None
    throttle.succeeded(name)
    rehashed = hasher().hash(password) if hasher().check_needs_rehash(stored) else None
    return people.start_session(store, user, SESSION_TTL, source, rehashed)
