"""Creating users and tokens, changing passwords, revoking tokens: the rules, then the store's write.

What a username, a password and a token's text may be, which roles a user may hold and the duty split
(collector/accounts/duties.py) are decided here; collector/store/people.py stores what passes. Refusals
carry the store's stable codes and a message for the admin who asked, in Chinese.
"""

from __future__ import annotations

from agent.vocabulary import READ_ROLES, ROLES
from collector.accounts import duties
from collector.accounts.throttle import LoginLocked, login_throttle
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


_WORDS = {"unknown_user": "没有用户“{}”", "user_disabled": "用户“{}”已停用", "user_enabled": "用户“{}”已是启用状态"}


def _in_chinese(exc: StoreError, username: str) -> StoreError:
    words = _WORDS.get(exc.code)
    return StoreError(exc.code, words.format(printable(username or "")[:60])) if words else exc


def _checked_password(password: str) -> str:
    if len(password or "") < MIN_PASSWORD:
        raise StoreError("weak_password", f"密码至少 {MIN_PASSWORD} 个字符")
    if has_unprintable(password):
        raise StoreError("bad_text", "密码不能含控制字符")
    return hasher().hash(password)


def set_password(store, username: str, password: str, actor: Actor = SYSTEM, creator: TokenInfo | None = None) -> int:
    """Reset a user's password (an admin of the user's region, or the command line): audited, and every
    session of the user ends. An admin may not reset a reviewer's password where its own admin region
    overlaps (it could then sign in as the reviewer: the duty split); that is the command line's to do.
    Returns how many sessions ended."""
    scope = creator.region_path if creator is not None else "/"
    try:
        if creator is not None:
            target = people.user_record(store, username, scope)
            if target["role"] == duties.CONFLICTING.get(creator.role) and duties.overlap(target["region"], scope):
                raise StoreError("duty_conflict", "管理员不能重置本区域评审员的密码（否则可冒用其身份；"
                                                  "请在采集端主机上用命令行 users reset-password）")
        return people.set_password_hash(store, username, _checked_password(password), actor, scope)
    except StoreError as exc:
        raise _in_chinese(exc, username) from None


def change_own_password(store, info: TokenInfo, old: str, new: str, cookie: str | None,
                        actor: Actor = SYSTEM) -> int:
    """A signed-in user changes their own password: the old one is checked first (a stolen session alone
    cannot lock the owner out); their other sessions end, this one stays."""
    from argon2.exceptions import InvalidHashError, VerificationError

    username = info.actor.split(":", 1)[1] if info.via == "session" else ""
    user = people.find_user(store, username) if username else None
    if user is None or user.disabled:
        raise StoreError("not_a_user", "只有以用户身份登录时才能修改自己的密码")
    throttle = login_throttle(store)  # guessing the old password counts like guessing at the login form
    wait = throttle.retry_after(username, actor.source)
    if wait > 0:
        raise LoginLocked(wait)
    try:
        ok = not has_unprintable(old) and hasher().verify(user.password_hash, old or "")
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok:
        _, lock = throttle.failed(username, actor.source)
        if lock:
            raise LoginLocked(lock)
        raise StoreError("wrong_password", "原密码不正确")
    return people.set_password_hash(store, username, _checked_password(new), actor, keep_session=cookie, how="self")


def end_sessions(store, username: str, actor: Actor = SYSTEM, scope: str = "/") -> int:
    try:
        return people.end_sessions(store, username, actor, scope)
    except StoreError as exc:
        raise _in_chinese(exc, username) from None


def set_disabled(store, username: str, disabled: bool, actor: Actor = SYSTEM, scope: str = "/") -> dict:
    """Disable a user (sessions end, its tokens are revoked; collector/store/people.py says which) or
    enable it again, when the duty split still allows the role: disabled users hold no role meanwhile."""
    try:
        if not disabled:
            target = people.user_record(store, username, scope)
            if target["disabled"]:
                duties.check(store, target["person"], target["role"], target["region"])
        return people.set_disabled(store, username, disabled, actor, scope)
    except StoreError as exc:
        raise _in_chinese(exc, username) from None


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


def revoke_token(store, token_id: int, actor: Actor = SYSTEM, scope: str = "/") -> dict:
    """Revoke a token (an agent's when its PC is replaced or stolen, a script's when it leaks); audited.
    Revoking twice is refused, so the log has one entry per revocation. An admin revokes within its region."""
    try:
        return people.revoke_token(store, token_id, actor, scope)
    except StoreError as exc:
        words = {"unknown_token": f"没有编号为 {token_id} 的令牌", "token_revoked": f"令牌 {token_id} 已经吊销"}
        if exc.code in words:
            raise StoreError(exc.code, words[exc.code]) from None
        raise
