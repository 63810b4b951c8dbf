"""Users, web sessions and API tokens as stored; every change audited.

Secrets are stored only as hashes: passwords as the argon2id hashes collector/accounts/ makes, session
cookies and API tokens (256 random bits, so a fast hash is enough) with SHA-256. The rules of who may hold
what (names, passwords, the duty split) and the login flow are collector/accounts/'s; these functions
store what those rules let through.
"""

from __future__ import annotations

import secrets
import threading
import weakref
from datetime import timedelta

from sqlalchemy import and_, delete, or_, select

from collector.registry.regions import is_within
from collector.store import StoreError, TokenInfo, sha256_hex, utcnow
from collector.store import models as m
from collector.store.audit import SYSTEM, Actor, append
from collector.store.points import ensure_region


# -- users ------------------------------------------------------------------------------------------------
def add_user(store, username: str, person: str, password_hash: str, role: str, region: str,
             actor: Actor = SYSTEM) -> int:
    """Store a user whose name, role and region were checked (collector/accounts/users.py); audited."""
    with store.write_session() as s:
        if s.scalar(select(m.User.id).where(m.User.username == username)) is not None:
            raise StoreError("user_exists", f"username '{username}' is taken")
        ensure_region(s, region)
        user = m.User(username=username, person=person, password_hash=password_hash, role=role,
                      region_path=region, created_at=utcnow())
        s.add(user)
        s.flush()
        append(s, actor, "user.create", f"user:{username}", {"role": role, "person": person}, region)
        return user.id


def _user(s, username: str, scope: str = "/", lock: bool = False) -> m.User:
    """The user, for a write by someone confined to ``scope``: outside it the user does not exist."""
    stmt = select(m.User).where(m.User.username == (username or "").strip())
    user = s.scalar(stmt.with_for_update() if lock else stmt)
    if user is None or not is_within(user.region_path, scope):
        raise StoreError("unknown_user", f"no user '{username}'")
    return user


def user_record(store, username: str, scope: str = "/") -> dict:
    with store.session() as s:
        u = _user(s, username, scope)
        return {"username": u.username, "person": u.person, "role": u.role, "region": u.region_path,
                "disabled": u.disabled}


def _end_sessions(s, user: m.User, keep_hash: str | None = None) -> int:
    query = delete(m.WebSession).where(m.WebSession.user_id == user.id)
    if keep_hash is not None:
        query = query.where(m.WebSession.id_hash != keep_hash)
    return s.execute(query).rowcount or 0


def set_password_hash(store, username: str, password_hash: str, actor: Actor = SYSTEM, scope: str = "/",
                      keep_session: str | None = None, how: str = "reset") -> int:
    """Replace a user's password hash and end their sessions (all but the cookie ``keep_session``: the
    user's own, when they changed it themselves); audited with ``how`` (reset | self). Returns how many
    sessions ended."""
    with store.write_session() as s:
        user = _user(s, username, scope, lock=True)
        user.password_hash = password_hash
        ended = _end_sessions(s, user, sha256_hex(keep_session) if keep_session else None)
        append(s, actor, "user.password", f"user:{user.username}", {"how": how, "sessions_ended": ended},
               user.region_path)
    return ended


def end_sessions(store, username: str, actor: Actor = SYSTEM, scope: str = "/") -> int:
    """Log a user out everywhere at once (audited); every collector refuses the cookies on their next use."""
    with store.write_session() as s:
        user = _user(s, username, scope, lock=True)
        ended = _end_sessions(s, user)
        append(s, actor, "user.end_sessions", f"user:{user.username}", {"sessions_ended": ended}, user.region_path)
    return ended


def set_disabled(store, username: str, disabled: bool, actor: Actor = SYSTEM, scope: str = "/") -> dict:
    """Disable a user — their sessions end and their tokens are revoked, in one audited transaction — or
    enable them again (sessions and tokens stay ended: they log in anew and are issued new tokens).

    A user's tokens are those naming its person in its role, and those it created itself through the
    API (found by the ``token.create`` entries of the hash-chained audit log): a stolen admin account
    cannot leave a token behind that outlives it."""
    with store.write_session() as s:
        user = _user(s, username, scope, lock=True)
        if user.disabled == disabled:
            raise StoreError("user_disabled" if disabled else "user_enabled",
                             f"user '{user.username}' is {'disabled' if disabled else 'enabled'} already")
        user.disabled = disabled
        details: dict = {}
        revoked: list[int] = []
        if disabled:
            details["sessions_ended"] = _end_sessions(s, user)
            created = [int(t.split(":", 1)[1]) for (t,) in s.execute(select(m.AuditEntry.target).where(
                m.AuditEntry.actor == f"user:{user.username}", m.AuditEntry.action == "token.create"))
                if t and t.startswith("token:") and t[6:].isdigit()]
            rows = s.scalars(select(m.ApiToken).where(m.ApiToken.revoked.is_(False), or_(
                m.ApiToken.id.in_(created), and_(m.ApiToken.person == user.person, m.ApiToken.role == user.role)))
            ).all()
            for row in rows:
                row.revoked = True
                revoked.append(row.id)
                agent = s.get(m.Agent, row.agent_id) if row.agent_id else None
                if agent is not None:
                    agent.revoked = True
            details["tokens_revoked"] = revoked
        append(s, actor, "user.disable" if disabled else "user.enable", f"user:{user.username}", details,
               user.region_path)
        record = {"username": user.username, "role": user.role, "region": user.region_path, "disabled": disabled,
                  **details}
    _forget_tokens(store, set(revoked))
    return record


def list_users(store, scope: str = "/") -> list[dict]:
    with store.session() as s:
        rows = s.scalars(select(m.User).order_by(m.User.username)).all()
        return [{"username": u.username, "person": u.person, "role": u.role, "region": u.region_path,
                 "disabled": u.disabled} for u in rows if is_within(u.region_path, scope)]


def regions_held(store, person: str, role: str) -> list[str]:
    """The regions in which this person holds this role, by an enabled user or an unrevoked token."""
    with store.session() as s:
        held = [r for (r,) in s.execute(select(m.User.region_path).where(
            m.User.person == person, m.User.role == role, m.User.disabled.is_(False)))]
        held += [r for (r,) in s.execute(select(m.ApiToken.region_path).where(
            m.ApiToken.person == person, m.ApiToken.role == role, m.ApiToken.revoked.is_(False)))]
    return held


def find_user(store, username: str) -> m.User | None:
    with store.session() as s:
        return s.scalar(select(m.User).where(m.User.username == username))


def start_session(store, user: m.User, expires_in: timedelta, source: str | None = None,
                  new_password_hash: str | None = None) -> tuple[str, TokenInfo]:
    """Open a web session for a user whose password was checked: (cookie value, who). The cookie is stored
    only as its hash; ``new_password_hash`` replaces an outdated hash of the same password."""
    cookie = secrets.token_urlsafe(32)
    now = utcnow()
    with store.write_session() as s:
        if new_password_hash is not None:
            s.get(m.User, user.id).password_hash = new_password_hash
        s.add(m.WebSession(id_hash=sha256_hex(cookie), user_id=user.id, created_at=now,
                           expires_at=now + expires_in, source=source))
        append(s, Actor(f"user:{user.username}", source), "login", f"user:{user.username}", {},
               user.region_path)
    return cookie, user_info(user)


def user_info(user: m.User) -> TokenInfo:
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
        return user_info(user)


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
def add_token(store, role: str, region: str, point_code: str | None = None, agent_id: str | None = None,
              description: str | None = None, person: str | None = None, actor: Actor = SYSTEM) -> str:
    """Issue a token whose role, region and text were checked (collector/accounts/users.py); audited. An
    agent's token takes its point's region."""
    token = "pw_" + secrets.token_urlsafe(32)
    with store.write_session() as s:
        if point_code:
            point_region = s.scalar(select(m.Point.region_path).where(m.Point.code == point_code))
            if point_region is None:
                raise StoreError("unknown_point", f"no point with code '{point_code}'")
            region = point_region if role == "agent" else region
        row = m.ApiToken(token_hash=sha256_hex(token), role=role, region_path=region, point_code=point_code,
                         agent_id=agent_id, description=description, person=person, created_at=utcnow())
        s.add(row)
        s.flush()
        append(s, actor, "token.create", f"token:{row.id}",
               {"role": role, "point": point_code, "person": person, "description": description}, region)
    return token


# A token row is never edited after it is made, except to revoke it (``tokens revoke``, or disabling the
# user it belongs to: ``set_disabled``), which takes effect at once in the process that revoked it and
# within this long on every other running collector (sessions are looked up on every request: a disabled
# user's cookies stop everywhere at once). Longer than the
# agents' report interval, or nearly every report would look its token up again.
TOKEN_CACHE_S = 60.0
_TOKEN_COLUMNS = (m.ApiToken.id, m.ApiToken.role, m.ApiToken.region_path, m.ApiToken.point_code,
                  m.ApiToken.agent_id, m.ApiToken.person)


# One cache per Store (per database), gone with it.
_TOKEN_CACHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def _token_cache(store) -> dict:
    with _CACHES_LOCK:
        cache = _TOKEN_CACHES.get(store)
        if cache is None:
            cache = _TOKEN_CACHES[store] = {}
        return cache


def authenticate(store, token: str) -> TokenInfo | None:
    """The token's principal; found tokens are cached (every agent report would otherwise cost a database
    round trip before its own write)."""
    import time

    digest = sha256_hex(token)
    cache = _token_cache(store)
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


def list_tokens(store, scope: str = "/") -> list[dict]:
    """Every API token's record within ``scope`` (never the token: only its hash is stored), oldest first."""
    t = m.ApiToken
    with store.engine.connect() as conn:
        rows = conn.execute(select(t.id, t.role, t.region_path, t.point_code, t.agent_id, t.person, t.description,
                                   t.created_at, t.revoked).order_by(t.id)).all()
    return [{"id": r[0], "role": r[1], "region": r[2], "point": r[3], "agent_id": r[4], "person": r[5],
             "description": r[6], "created_at": r[7], "revoked": bool(r[8])} for r in rows
            if is_within(r[2], scope)]


def revoke_token(store, token_id: int, actor: Actor = SYSTEM, scope: str = "/") -> dict:
    """Revoke a token (an agent's when its PC is replaced or stolen, a script's when it leaks); audited.
    Revoking twice is refused, so the log has one entry per revocation. Outside ``scope`` (the region of
    the admin asking) a token does not exist."""
    with store.write_session() as s:
        row = s.get(m.ApiToken, token_id, with_for_update=True)
        if row is None or not is_within(row.region_path, scope):
            raise StoreError("unknown_token", f"no token {token_id}")
        if row.revoked:
            raise StoreError("token_revoked", f"token {token_id} is revoked already")
        row.revoked = True
        if row.agent_id:
            agent = s.get(m.Agent, row.agent_id)
            if agent is not None:
                agent.revoked = True  # the enrolment record shows it too (evidence: 已吊销)
        append(s, actor, "token.revoke", f"token:{token_id}",
               {"role": row.role, "point": row.point_code, "agent_id": row.agent_id}, row.region_path)
        info = {"id": row.id, "role": row.role, "point": row.point_code, "region": row.region_path}
    _forget_tokens(store, {token_id})
    return info


def _forget_tokens(store, ids: set[int]) -> None:
    """Drop revoked tokens from this process's cache: refused here at once, elsewhere within TOKEN_CACHE_S."""
    if not ids:
        return
    cache = _token_cache(store)
    for digest, (_, cached) in list(cache.items()):
        if cached.id in ids:
            cache.pop(digest, None)
