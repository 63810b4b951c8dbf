"""Users, web sessions and API tokens; the 操作、管理、监督 split; every change audited.

Secrets are stored only as hashes: passwords with argon2id (argon2-cffi's defaults), session cookies and
API tokens (256 random bits, so a fast hash is enough) with SHA-256.

Logins are throttled (collector/accounts/throttle.py); every refused attempt, locked or not, is a
``login.failed`` audit entry.

The duty split (智慧医保 standard: 多级权限分配, no one person in two of the three layers): every user and
every personal token names a ``person`` (for users it defaults to the username, and a username holds exactly
one role). One person may not be ``admin`` of a region and ``reviewer`` of the same region, of a region
above it or of one beneath it; the store refuses to create such a pair, whichever comes second.
"""

from __future__ import annotations

import re
import secrets
from datetime import timedelta

from sqlalchemy import select

from agent.vocabulary import ROLES
from collector.accounts.throttle import LoginLocked, login_throttle
from collector.registry.regions import RegionError, is_within, normalize_path
from collector.store import StoreError, TokenInfo, sha256_hex, utcnow
from collector.store import models as m
from collector.store.audit import SYSTEM, Actor, append, record
from collector.store.points import ensure_region

SESSION_TTL = timedelta(hours=12)
USER_ROLES = ("viewer", "reviewer", "admin")
CONFLICTING = {"admin": "reviewer", "reviewer": "admin"}
MIN_PASSWORD = 8

_hasher = None
# Text no database column should receive from a person: control characters (NUL is refused by PostgreSQL)
# and lone surrogates (not encodable as UTF-8).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def has_unprintable(text: str | None) -> bool:
    return bool(text) and _UNPRINTABLE.search(text) is not None


def _printable(text: str) -> str:
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


def _check_split(s, person: str | None, role: str, region: str) -> None:
    other = CONFLICTING.get(role)
    if not person or not other:
        return
    held = [r for (r,) in s.execute(select(m.User.region_path).where(
        m.User.person == person, m.User.role == other, m.User.disabled.is_(False)))]
    held += [r for (r,) in s.execute(select(m.ApiToken.region_path).where(
        m.ApiToken.person == person, m.ApiToken.role == other, m.ApiToken.revoked.is_(False)))]
    for path in held:
        if is_within(path, region) or is_within(region, path):
            raise StoreError("duty_conflict",
                             f"“{person}”已是“{path}”的{_ROLE_CN[other]}，不能再担任“{region}”的{_ROLE_CN[role]}"
                             "（操作、管理、监督分离：管理员与评审员不得为同一人）")


_ROLE_CN = {"admin": "管理员", "reviewer": "评审员", "viewer": "查看员", "agent": "代理"}


# -- users ------------------------------------------------------------------------------------------------
def create_user(store, username: str, password: str, role: str, region_path: str = "/",
                person: str | None = None, actor: Actor = SYSTEM) -> int:
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
    person = (person or username).strip()
    with store.write_session() as s:
        if s.scalar(select(m.User.id).where(m.User.username == username)) is not None:
            raise StoreError("user_exists", f"用户名“{username}”已存在（一个用户名只担任一个角色）")
        _check_split(s, person, role, region)
        ensure_region(s, region)
        user = m.User(username=username, person=person, password_hash=hasher().hash(password), role=role,
                      region_path=region, created_at=utcnow())
        s.add(user)
        s.flush()
        append(s, actor, "user.create", f"user:{username}", {"role": role, "person": person}, region)
        return user.id


def set_password(store, username: str, password: str, actor: Actor = SYSTEM) -> None:
    """Replace a user's password (audited); their open sessions stay until they expire or log out."""
    if len(password or "") < MIN_PASSWORD:
        raise StoreError("weak_password", f"密码至少 {MIN_PASSWORD} 个字符")
    with store.write_session() as s:
        user = s.scalar(select(m.User).where(m.User.username == (username or "").strip()))
        if user is None:
            raise StoreError("unknown_user", f"没有用户“{username}”")
        user.password_hash = hasher().hash(password)
        append(s, actor, "user.password", f"user:{user.username}", {}, user.region_path)


def list_users(store, scope: str = "/") -> list[dict]:
    with store.session() as s:
        rows = s.scalars(select(m.User).order_by(m.User.username)).all()
        return [{"username": u.username, "person": u.person, "role": u.role, "region": u.region_path,
                 "disabled": u.disabled} for u in rows if is_within(u.region_path, scope)]


def login(store, username: str, password: str, source: str | None = None) -> tuple[str, TokenInfo] | None:
    """Check a password; on success start a session and return (cookie value, who). None for a wrong
    password; raises :class:`LoginLocked` while this username or source is locked (password unchecked)."""
    from argon2.exceptions import InvalidHashError, VerificationError

    name = (username or "").strip()[:60]
    who = f"user:{_printable(name)}"
    throttle = login_throttle(store)
    wait = throttle.retry_after(name, source)
    if wait > 0:
        record(store, Actor(who, source), "login.failed", who, {"reason": "locked", "retry_after_s": round(wait)})
        raise LoginLocked(wait)
    user = None
    usable = not has_unprintable(name) and not has_unprintable(password)
    if usable:  # else nobody's: PostgreSQL would refuse NUL in the query, argon2 a lone surrogate
        with store.session() as s:
            user = s.scalar(select(m.User).where(m.User.username == name))
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
        record(store, Actor(who, source), "login.failed", who, details, user.region_path if user else "/")
        if lock:
            raise LoginLocked(lock)
        return None
    throttle.succeeded(name)
    cookie = secrets.token_urlsafe(32)
    now = utcnow()
    with store.write_session() as s:
        row = s.get(m.User, user.id)
        if hasher().check_needs_rehash(row.password_hash):
            row.password_hash = hasher().hash(password)
        s.add(m.WebSession(id_hash=sha256_hex(cookie), user_id=user.id, created_at=now,
                           expires_at=now + SESSION_TTL, source=source))
        append(s, Actor(f"user:{user.username}", source), "login", f"user:{user.username}", {},
               user.region_path)
    return cookie, _user_info(user)


_DUMMY: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY:
        _DUMMY.append(hasher().hash(secrets.token_hex(8)))
    return _DUMMY[0]


def _user_info(user: m.User) -> TokenInfo:
    return TokenInfo(user.id, user.role, user.region_path, None, None, actor=f"user:{user.username}",
                     via="session", person=user.person)


def session_info(store, cookie: str) -> TokenInfo | None:
    if not cookie:
        return None
    with store.session() as s:
        row = s.execute(select(m.WebSession, m.User).join(m.User, m.User.id == m.WebSession.user_id)
                        .where(m.WebSession.id_hash == sha256_hex(cookie))).first()
        if row is None:
            return None
        sess, user = row
        if sess.expires_at <= utcnow() or user.disabled:
            return None
        return _user_info(user)


def logout(store, cookie: str, source: str | None = None) -> bool:
    with store.write_session() as s:
        row = s.execute(select(m.WebSession, m.User).join(m.User, m.User.id == m.WebSession.user_id)
                        .where(m.WebSession.id_hash == sha256_hex(cookie or ""))).first()
        if row is None:
            return False
        sess, user = row
        s.delete(sess)
        append(s, Actor(f"user:{user.username}", source), "logout", f"user:{user.username}", {},
               user.region_path)
        return True


# -- API tokens -----------------------------------------------------------------------------------------
def create_token(store, role: str, region_path: str = "/", point_code: str | None = None,
                 agent_id: str | None = None, description: str | None = None, person: str | None = None,
                 actor: Actor = SYSTEM) -> str:
    if role not in ROLES:
        raise StoreError("bad_role", f"unknown role '{role}' (one of {', '.join(ROLES)})")
    if has_unprintable(description) or has_unprintable(person) or has_unprintable(point_code):
        raise StoreError("bad_text", "令牌说明、姓名和服务点编码不能含控制字符")
    if role == "agent" and not point_code:
        raise StoreError("agent_needs_point", "an agent token must be bound to a point (--point CODE)")
    region = _region(region_path)
    token = "pw_" + secrets.token_urlsafe(32)
    with store.write_session() as s:
        if point_code:
            point_region = s.scalar(select(m.Point.region_path).where(m.Point.code == point_code))
            if point_region is None:
                raise StoreError("unknown_point", f"no point with code '{point_code}'")
            region = point_region if role == "agent" else region
        person = (person or "").strip() or None
        _check_split(s, person, role, region)
        row = m.ApiToken(token_hash=sha256_hex(token), role=role, region_path=region, point_code=point_code,
                         agent_id=agent_id, description=description, person=person, created_at=utcnow())
        s.add(row)
        s.flush()
        append(s, actor, "token.create", f"token:{row.id}",
               {"role": role, "point": point_code, "person": person, "description": description}, region)
    return token


# A token row is never edited after it is made, except to revoke it (``tokens revoke``), which takes effect
# at once in the process that revoked it and within this long on every running collector. Longer than the
# agents' report interval, or nearly every report would look its token up again (profiled: 6 % of the
# collector's time at 2,000 agents every 10 s with a 10 s cache).
TOKEN_CACHE_S = 60.0
_TOKEN_COLUMNS = (m.ApiToken.id, m.ApiToken.role, m.ApiToken.region_path, m.ApiToken.point_code,
                  m.ApiToken.agent_id, m.ApiToken.person)


def authenticate(store, token: str) -> TokenInfo | None:
    """The token's principal; found tokens are cached (every agent report would otherwise cost a database
    round trip before its own write)."""
    import time

    digest = sha256_hex(token)
    cache = store._token_cache
    hit = cache.get(digest)
    now = time.monotonic()
    if hit is not None and now - hit[0] < TOKEN_CACHE_S:
        return hit[1]
    with store.engine.connect() as conn:
        row = conn.execute(select(*_TOKEN_COLUMNS).where(m.ApiToken.token_hash == digest,
                                                         m.ApiToken.revoked.is_(False))).first()
    if row is None:
        cache.pop(digest, None)
        return None
    token_id, role, region_path, point_code, agent_id, person = row
    actor = f"agent:{agent_id}" if agent_id else f"token:{token_id}"
    info = TokenInfo(token_id, role, region_path, point_code, agent_id, actor=actor, via="token", person=person)
    if len(cache) > 100_000:
        cache.clear()
    cache[digest] = (now, info)
    return info


def list_tokens(store) -> list[dict]:
    """Every API token's record (never the token: only its hash is stored), oldest first."""
    t = m.ApiToken
    with store.engine.connect() as conn:
        rows = conn.execute(select(t.id, t.role, t.region_path, t.point_code, t.agent_id, t.person, t.description,
                                   t.created_at, t.revoked).order_by(t.id)).all()
    return [{"id": r[0], "role": r[1], "region": r[2], "point": r[3], "agent_id": r[4], "person": r[5],
             "description": r[6], "created_at": r[7], "revoked": bool(r[8])} for r in rows]


def revoke_token(store, token_id: int, actor: Actor = SYSTEM) -> dict:
    """Revoke a token (an agent's when its PC is replaced or stolen, a script's when it leaks); audited.
    Revoking twice is refused, so the log has one entry per revocation."""
    with store.write_session() as s:
        row = s.get(m.ApiToken, token_id, with_for_update=True)
        if row is None:
            raise StoreError("unknown_token", f"没有编号为 {token_id} 的令牌")
        if row.revoked:
            raise StoreError("token_revoked", f"令牌 {token_id} 已经吊销")
        row.revoked = True
        if row.agent_id:
            agent = s.get(m.Agent, row.agent_id)
            if agent is not None:
                agent.revoked = True  # the enrolment record shows it too (evidence: 已吊销)
        append(s, actor, "token.revoke", f"token:{token_id}",
               {"role": row.role, "point": row.point_code, "agent_id": row.agent_id}, row.region_path)
        info = {"id": row.id, "role": row.role, "point": row.point_code, "region": row.region_path}
    for digest, (_, cached) in list(store._token_cache.items()):
        if cached.id == token_id:
            store._token_cache.pop(digest, None)
    return info
