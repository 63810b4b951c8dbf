"""Creating users and tokens, changing passwords, revoking tokens: the rules, then the store's write.

What a username, a password and a token's text may be, which roles a user may hold and the duty split
(collector/accounts/duties.py) are decided here; collector/store/people.py stores what passes. Refusals
carry the store's stable codes and a message for the admin who asked, in Chinese.
"""

from __future__ import annotations

from agent.vocabulary import READ_ROLES, ROLES
from collector.accounts import duties
from collector.cleantext import CONTROL
from collector.registry.regions import RegionError, normalize_path
from collector.store import StoreError, TokenInfo, people
from collector.store.audit import SYSTEM, Actor

USER_ROLES = READ_ROLES  # a person signs in to read; agents have tokens, never users
MIN_PASSWORD = 8

_hasher = None
# Text no database column should receive from a person: control characters (NUL is refused by PostgreSQL)
# and lone surrogates (not encodable as UTF-8): collector/cleantext.py's CONTROL.
_UNPRINTABLE = CONTROL


def has_unprintable(text: str | None) -> bool:
    return bool(text) and _UNPRINTABLE.search(text) is not None


def printable(text: str) -> str:
    return _UNPRINTABLE.sub("\ufffd", text)


def hasher():
    global _hasher
    if _hasher is None:
        from argon2 import PasswordHasher

        _hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile
    return _hasher


def _region(path: str) -> str:
    try:
        return normalize_path(path or "/")
    except RegionError as exc:
        raise StoreError("bad_region", str(exc)) from None


def create_user(store, username: str, password: str, role: str, region_path: str = "/",
                person: str | None = None, actor: Actor = SYSTEM, creator: TokenInfo | None = None) -> int:
    """A new user (audited). ``person`` is required unless the collector itself creates it (then it
    defaults to the username); ``creator`` is the admin principal asking, for the duty split."""
    username = (username or "").strip()
    if not username or len(username) > 60 or any(c.isspace() or not c.isprintable() for c in username):
        raise StoreError("bad_username", "用户名须为 1–60 个可见字符，且不含空白")
    if has_unprintable(person) or has_unprintable(password):
        raise StoreError("bad_text", "姓名和密码不能含控制字符")
    if role not in USER_ROLES:
        raise StoreError("bad_role", f"unknown role '{role}' for a user (one of {', '.join(USER_ROLES)})")
    if len(password or "") < MIN_PASSWORD:
        raise StoreError("weak_password", f"密码至少 {MIN_PASSWORD} 个字符")
    region = _region(region_path)
    person = (person or "").strip() or None
    duties.check_new(store, person, role, region, actor, creator)
    person = person or username
    try:
        return people.add_user(store, username, person, hasher().hash(password), role, region, actor)
    except StoreError as exc:
        if exc.code == "user_exists":
            raise StoreError(exc.code, f"用户名“{username}”已存在（一个用户名只担任一个角色）") from None
        raise


def set_password(store, username: str, password: str, actor: Actor = SYSTEM) -> None:
    """Replace a user's password (audited); their open sessions stay until they expire or log out."""
    if len(password or "") < MIN_PASSWORD:
        raise StoreError("weak_password", f"密码至少 {MIN_PASSWORD} 个字符")
    try:
        people.set_password_hash(store, username, hasher().hash(password), actor)
    except StoreError as exc:
        if exc.code == "unknown_user":
            raise StoreError(exc.code, f"没有用户“{username}”") from None
        raise


def create_token(store, role: str, region_path: str = "/", point_code: str | None = None,
                 agent_id: str | None = None, description: str | None = None, person: str | None = None,
                 actor: Actor = SYSTEM, creator: TokenInfo | None = None) -> str:
    if role not in ROLES:
        raise StoreError("bad_role", f"unknown role '{role}' (one of {', '.join(ROLES)})")
    if has_unprintable(description) or has_unprintable(person) or has_unprintable(point_code):
        raise StoreError("bad_text", "令牌说明、姓名和服务点编码不能含控制字符")
    if role == "agent" and not point_code:
        raise StoreError("agent_needs_point", "an agent token must be bound to a point (--point CODE)")
    region = _region(region_path)
    person = (person or "").strip() or None
    duties.check_new(store, person, role, region, actor, creator)
    return people.add_token(store, role, region, point_code, agent_id, description, person, actor)


def revoke_token(store, token_id: int, actor: Actor = SYSTEM) -> dict:
    """Revoke a token (an agent's when its PC is replaced or stolen, a script's when it leaks); audited.
    Revoking twice is refused, so the log has one entry per revocation."""
    try:
        return people.revoke_token(store, token_id, actor)
    except StoreError as exc:
        words = {"unknown_token": f"没有编号为 {token_id} 的令牌", "token_revoked": f"令牌 {token_id} 已经吊销"}
        if exc.code in words:
            raise StoreError(exc.code, words[exc.code]) from None
        raise
