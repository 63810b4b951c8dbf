"""Cross-site request forgery: what a state-changing request made with the session cookie must carry.

SameSite=Lax alone is not enough: "same site" ignores the port, so a page on another port of the
collector's host (any other web service there) could post the admin's forms with the admin's cookie
(issue 18, item 9). So every state-changing request that a browser's cookie authenticates carries:

1. **its origin**: ``Origin`` (or, when a browser sends none, ``Referer``) must be the collector's own
   origin: the scheme and host the request was addressed to, or ``public_url`` from the config. Another
   port is another origin; a request with neither header is refused.
2. **a per-session token**: HMAC of the session cookie (which is HttpOnly: a page elsewhere can neither
   read it nor compute the token), rendered by the templates as a hidden ``csrf_token`` field and as
   ``<meta name="csrf-token">`` for the pages' own scripts; JSON API calls made with the cookie send it
   as ``X-CSRF-Token`` (collector/web/static/docs-init.js does, for Swagger UI's "Try it out").
3. **login too** (login CSRF: signing the victim into the attacker's account): the login form carries a
   pre-session token that must equal its HttpOnly ``pw_login_csrf`` cookie, and the origin check above.
   A page on another port can set cookies for the host, so the token alone would not do; the origin
   check is what it cannot forge.

API calls with ``Authorization: Bearer`` are not affected: a browser never adds that header by itself.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from fastapi import HTTPException, Request

HEADER = "x-csrf-token"
FIELD = "csrf_token"
LOGIN_COOKIE = "pw_login_csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


def session_token(cookie: str | None) -> str:
    """The session's CSRF token; '' without a session."""
    if not cookie:
        return ""
    return hmac.new(cookie.encode("utf-8", "replace"), b"pointwatch csrf v1", hashlib.sha256).hexdigest()


def new_login_token() -> str:
    return secrets.token_urlsafe(24)


def _origin(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def own_origins(request: Request) -> set[str]:
    origins = {f"{request.url.scheme}://{request.url.netloc}".lower()}
    public = getattr(getattr(request.app.state, "settings", None), "public_url", None)
    if public and _origin(public):
        origins.add(_origin(public))
    return origins


def check_origin(request: Request) -> None:
    sent = request.headers.get("origin") or ""
    origin = _origin(sent) if sent and sent != "null" else None
    if origin is None and not sent:
        referer = request.headers.get("referer")
        origin = _origin(referer) if referer else None
    if origin is None or origin not in own_origins(request):
        raise HTTPException(403, detail="请求来源不是本采集端（跨站请求已拒绝）")


async def _sent_token(request: Request) -> str:
    token = request.headers.get(HEADER, "")
    if not token and request.headers.get("content-type", "").split(";")[0].strip().lower() in _FORMS:
        form = await request.form()  # Starlette keeps it: the route's own Form(...) parameters read it again
        value = form.get(FIELD)
        token = value if isinstance(value, str) else ""
    return token


async def require(request: Request, expected: str) -> None:
    """Refuse (403) a state-changing request without our origin and the expected token."""
    if request.method in SAFE_METHODS:
        return
    check_origin(request)
    sent = await _sent_token(request)
    if not expected or not hmac.compare_digest(sent.encode("utf-8", "replace"), expected.encode()):
        raise HTTPException(403, detail="表单已过期或来源不明（CSRF 校验失败），请刷新页面后重试")
