"""Request dependencies shared by every router: the store, who is asking, and what they may see.

One principal type for both ways in: an ``Authorization: Bearer`` API token (scripts, Grafana, agents) or
the web session cookie set by ``POST /login``. ``require_roles(...)`` is the one dependency routers use; it
also confines any ``{code}`` path parameter to the caller's region (a point outside it answers 404, so codes
cannot be probed), so a new route that takes a point code is scoped without further code.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool

from agent.vocabulary import READ_ROLES
from collector.api import csrf
from collector.registry.regions import RegionError, confine, is_within
from collector.store import Store, TokenInfo, people, points
from collector.store.audit import Actor

SESSION_COOKIE = "pw_session"
# Row ids in paths and queries: beyond the column's range the database raises (a 5xx) instead of "no row".
MAX_ID = 2**31 - 1
MAX_BIGINT = 2**63 - 1


def get_store(request: Request) -> Store:
    return request.app.state.store


def client_source(request: Request) -> str | None:
    return request.client.host if request.client else None


def actor_name(info: TokenInfo) -> str:
    """Who did it, as the audit log names them, whatever the door they came in by: a person (web session:
    the login form, the pages' forms, the JSON API with the cookie) is ``user:<username>``, an agent is
    ``agent:<agent id>``, any other API token ``token:<token id>`` (a token's ``person`` is a real name for
    the duty split, not an account). Every route that audits names its caller with this."""
    if info.via == "session":
        return info.actor  # "user:<username>", as the store records the login itself
    if info.agent_id:
        return f"agent:{info.agent_id}"
    return f"token:{info.id}"


def request_actor(request: Request, info: TokenInfo) -> Actor:
    return Actor(actor_name(info), client_source(request))


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


async def current_principal(request: Request) -> TokenInfo | None:
    """The caller, from a bearer token or else the session cookie; None when anonymous."""
    cached = getattr(request.state, "auth", None)
    if cached is not None:
        return cached
    store = get_store(request)
    header = request.headers.get("authorization", "")
    info = None
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("malformed Authorization header (expected: Bearer <token>)")
        info = await run_in_threadpool(people.authenticate, store, token.strip())
        if info is None:
            raise _unauthorized("invalid or revoked token")
    elif request.cookies.get(SESSION_COOKIE):
        info = await run_in_threadpool(people.session_info, store, request.cookies[SESSION_COOKIE])
        if info is not None:  # a browser sends the cookie by itself: writes must prove they are ours
            await csrf.require(request, csrf.session_token(request.cookies[SESSION_COOKIE]))
    if info is not None:
        request.state.auth = info
    return info


async def require_token(request: Request) -> TokenInfo:
    info = await current_principal(request)
    if info is None:
        raise _unauthorized("not signed in (Authorization: Bearer …, or log in at /login)")
    return info


def requested_scope(region: str, info: TokenInfo) -> str | None:
    """A ``?region=`` parameter confined to the caller's region (see regions.confine); 422 when malformed."""
    try:
        return confine(region, info.region_path)
    except RegionError as exc:
        raise HTTPException(422, detail=str(exc)) from None


def check_region(info: TokenInfo, region_path: str) -> None:
    """Outside the caller's region a point does not exist for them: 404, so codes cannot be probed."""
    if not is_within(region_path, info.region_path):
        raise HTTPException(404, detail="no such point")


async def _check_path_point(request: Request, info: TokenInfo) -> None:
    code = request.path_params.get("code")
    if code is None:
        return
    if info.role == "agent":
        if code != info.point_code:
            raise HTTPException(404, detail="no such point")
        return
    region = await run_in_threadpool(points.point_region, get_store(request), code)
    if region is not None:
        check_region(info, region)


def require_roles(*roles: str):
    """A dependency admitting only these roles (and, for ``{code}`` routes, only points in the region)."""

    async def dependency(request: Request) -> TokenInfo:
        info = await require_token(request)
        if info.role not in roles:
            raise HTTPException(403, detail=f"role '{info.role}' may not do this (needs {' or '.join(roles)})")
        await _check_path_point(request, info)
        return info

    dependency.roles = roles  # read by the role-matrix test
    return dependency


require_reader = require_roles(*READ_ROLES)
require_reviewer = require_roles("reviewer", "admin")
require_admin = require_roles("admin")
require_agent = require_roles("agent")


async def require_page_reader(request: Request) -> TokenInfo:
    """For HTML pages: like require_reader, but an anonymous visitor is sent to the login page."""
    try:
        return await require_reader(request)
    except HTTPException as exc:
        if exc.status_code != 401:
            raise
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise HTTPException(303, headers={"Location": f"/login?next={quote(target)}"}) from None


def require_page_roles(*roles: str):
    """For HTML pages and their forms: require_roles (the role first, then a ``{code}`` in the region), but
    an anonymous visitor is sent to the login page."""
    inner = require_roles(*roles)

    async def dependency(request: Request) -> TokenInfo:
        try:
            return await inner(request)
        except HTTPException as exc:
            if exc.status_code != 401:
                raise
            target = request.url.path if request.method == "GET" else "/"
            raise HTTPException(303, headers={"Location": f"/login?next={quote(target)}"}) from None

    dependency.roles = roles  # read by the role-matrix test
    return dependency


require_page_admin = require_page_roles("admin")


# The period parameters of every route (from/to, starts_at/ends_at): collector.timeutil's one rule.
MOMENT_DOC = "a date (2026-01-31: that Beijing day, the `to` day included) or an RFC 3339 time with its offset"


def moment(value: str | None, name: str, *, end: bool = False):
    """A query or body value as an aware datetime (collector.timeutil.parse_moment); 422 naming it if bad."""
    from collector.timeutil import parse_moment

    if value is None:
        return None
    try:
        return parse_moment(value, end_of_day=end)
    except ValueError as exc:
        raise HTTPException(422, detail=f"'{name}': {exc}") from None
