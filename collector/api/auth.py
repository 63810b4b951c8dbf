"""Logging in and out of the web UI, and the admin's API for users, tokens and enrolment codes.

Sessions live in an HttpOnly, SameSite=Lax cookie (Secure when the page was served over TLS — directly, or
through a proxy the collector was told to trust, see ``serve --forwarded-allow-ips``); the store keeps only
the cookie's SHA-256. Every write here is audited by the store in the same transaction. Failed logins are
throttled per username and per source (collector/accounts/throttle.py): a locked login answers 429 with
Retry-After and a Chinese message, whatever the password.
"""

from __future__ import annotations

import math

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from collector.accounts import login as accounts_login
from collector.accounts import users
from collector.accounts.login import SESSION_TTL
from collector.accounts.throttle import LoginLocked
from collector.api import csrf
from collector.api.deps import (
    MAX_ID,
    SESSION_COOKIE,
    client_source,
    current_principal,
    get_store,
    request_actor,
    require_admin,
    require_reader,
)
from collector.registry.regions import RegionError, is_within, normalize_path
from collector.store import StoreError, TokenInfo, people, points

router = APIRouter(tags=["auth"])


def _templates():
    from collector.api.ui import templates  # the lead's Jinja environment, filters and globals

    return templates


def _safe_next(target: str | None) -> str:
    # Only same-site paths: "//host" or "https://…" would make the login form an open redirect.
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _login_form(request: Request, next: str, status_code: int = 200, headers: dict | None = None, **context):
    """The login page with its pre-session CSRF token (collector/api/csrf.py), kept in an HttpOnly cookie."""
    token = request.cookies.get(csrf.LOGIN_COOKIE) or ""
    if not (20 <= len(token) <= 64 and token.isascii()):
        token = csrf.new_login_token()
    response = _templates().TemplateResponse(
        request, "login.html", {"next": _safe_next(next), "refresh": None, "login_csrf": token, **context},
        status_code=status_code, headers=headers)
    response.set_cookie(csrf.LOGIN_COOKIE, token, max_age=3600, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/login")
    return response


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
async def login_page(request: Request, next: str = "/"):
    from collector.api import firstrun

    if await run_in_threadpool(firstrun.needs_first_admin, get_store(request)):
        return firstrun.page(request, _templates())  # no admin yet: how to create one, not a useless form
    return _login_form(request, next)


@router.post("/login", include_in_schema=False)
async def login(request: Request, username: str = Form(""), password: str = Form(""), next: str = Form("/"),
                csrf_token: str = Form("")):
    store = get_store(request)
    try:
        await csrf.require(request, request.cookies.get(csrf.LOGIN_COOKIE, ""))
    except HTTPException as exc:
        return _login_form(request, next, status_code=403, username=_shown(username), error=exc.detail)
    try:
        outcome = await run_in_threadpool(accounts_login.login, store, username, password, client_source(request))
    except LoginLocked as exc:
        wait = max(1, math.ceil(exc.retry_after_s))
        return _login_form(request, next, status_code=429, headers={"Retry-After": str(wait)},
                           username=_shown(username), error=f"登录失败次数过多，已暂时锁定，请 {_wait_cn(wait)}后再试")
    if outcome is None:
        return _login_form(request, next, status_code=401, username=_shown(username), error="用户名或密码不正确")
    cookie, _info = outcome
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(SESSION_COOKIE, cookie, max_age=int(SESSION_TTL.total_seconds()), httponly=True,
                        samesite="lax", secure=request.url.scheme == "https", path="/")
    response.delete_cookie(csrf.LOGIN_COOKIE, path="/login")
    return response


def _shown(text: str) -> str:
    # Echoed into the form: a lone surrogate could not be encoded into the page.
    return text.encode("utf-8", "replace").decode("utf-8")[:60]


def _wait_cn(seconds: int) -> str:
    return f"{seconds} 秒" if seconds < 120 else f"{math.ceil(seconds / 60)} 分钟"


@router.post("/logout", include_in_schema=False)
async def logout(request: Request):
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        await csrf.require(request, csrf.session_token(cookie))  # else any page could sign the user out
        await run_in_threadpool(people.logout, get_store(request), cookie, client_source(request))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    return response


# -- JSON API ---------------------------------------------------------------------------------------------
api = APIRouter(prefix="/api/v1", tags=["people"])


def _within_caller(info: TokenInfo, region: str) -> str:
    try:
        region = normalize_path(region)
    except RegionError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    if not is_within(region, info.region_path):
        raise HTTPException(403, detail=f"region '{region}' is outside yours ('{info.region_path}')")
    return region


def _store_error(exc: StoreError) -> HTTPException:
    status = {"unknown_point": 404, "unknown_user": 404, "unknown_token": 404, "token_revoked": 409, "user_exists": 409, "duty_conflict": 409, "duty_self": 403,
              "user_disabled": 409, "user_enabled": 409, "wrong_password": 403, "not_a_user": 422}.get(exc.code, 422)
    return HTTPException(status, detail={"code": exc.code, "message": str(exc)})


@api.get("/me")
async def me(info: TokenInfo = Depends(require_reader)):
    return {"actor": info.actor, "role": info.role, "region": info.region_path, "via": info.via,
            "person": info.person}


@api.get("/users")
async def list_users(request: Request, info: TokenInfo = Depends(require_admin)):
    return {"users": await run_in_threadpool(people.list_users, get_store(request), info.region_path)}


class UserIn(BaseModel):
    username: str = Field(min_length=1, max_length=60)
    password: str = Field(min_length=1, max_length=200)
    role: str
    region: str = "/"
    person: str | None = Field(None, max_length=120)


@api.post("/users", status_code=201)
async def create_user(body: UserIn, request: Request, info: TokenInfo = Depends(require_admin)):
    region = _within_caller(info, body.region)
    try:
        await run_in_threadpool(users.create_user, get_store(request), body.username, body.password, body.role, region,
                                body.person, request_actor(request, info), info)
    except StoreError as exc:
        raise _store_error(exc) from None
    return {"username": body.username, "role": body.role, "region": region}


class PasswordIn(BaseModel):
    password: str = Field(min_length=1, max_length=200)


class OwnPasswordIn(BaseModel):
    old_password: str = Field(min_length=1, max_length=200)
    new_password: str = Field(min_length=1, max_length=200)


# Stopping a compromised account (admins, users of their own region; elsewhere a user does not exist, 404).
# Each is audited; disabling ends the user's sessions and revokes its tokens at once (people.set_disabled).
async def _user_action(request: Request, info: TokenInfo, run):
    try:
        return await run_in_threadpool(run, get_store(request), request_actor(request, info), info.region_path)
    except StoreError as exc:
        raise _store_error(exc) from None


@api.post("/users/{username}/disable")
async def disable_user(username: str, request: Request, info: TokenInfo = Depends(require_admin)):
    """Disable a user: its sessions end and its tokens are revoked (here at once, elsewhere within 60 s)."""
    return await _user_action(request, info, lambda store, actor, scope: users.set_disabled(
        store, username, True, actor, scope))


@api.post("/users/{username}/enable")
async def enable_user(username: str, request: Request, info: TokenInfo = Depends(require_admin)):
    """Enable a disabled user again (the duty split is checked anew); it logs in afresh."""
    return await _user_action(request, info, lambda store, actor, scope: users.set_disabled(
        store, username, False, actor, scope))


@api.post("/users/{username}/end-sessions")
async def end_user_sessions(username: str, request: Request, info: TokenInfo = Depends(require_admin)):
    """Sign a user out everywhere."""
    return await _user_action(request, info, lambda store, actor, scope: {
        "username": username, "sessions_ended": users.end_sessions(store, username, actor, scope)})


@api.put("/users/{username}/password")
async def reset_password(username: str, body: PasswordIn, request: Request, info: TokenInfo = Depends(require_admin)):
    """An admin sets a new password for a user of its region; every session of that user ends."""
    try:
        ended = await run_in_threadpool(lambda: users.set_password(
            get_store(request), username, body.password, request_actor(request, info), creator=info))
    except StoreError as exc:
        raise _store_error(exc) from None
    return {"username": username, "sessions_ended": ended}


@api.put("/me/password")
async def change_own_password(body: OwnPasswordIn, request: Request, info: TokenInfo = Depends(require_reader)):
    """A signed-in user changes their own password with the old one; their other sessions end."""
    try:
        ended = await run_in_threadpool(lambda: users.change_own_password(
            get_store(request), info, body.old_password, body.new_password, request.cookies.get(SESSION_COOKIE),
            request_actor(request, info)))
    except LoginLocked as exc:
        wait = max(1, math.ceil(exc.retry_after_s))
        raise HTTPException(429, detail="失败次数过多，请稍后再试", headers={"Retry-After": str(wait)}) from None
    except StoreError as exc:
        raise _store_error(exc) from None
    return {"sessions_ended": ended}


class TokenIn(BaseModel):
    role: str
    region: str = "/"
    point: str | None = Field(None, max_length=40)
    description: str | None = Field(None, max_length=200)
    person: str | None = Field(None, max_length=120)


@api.post("/tokens", status_code=201)
async def create_token(body: TokenIn, request: Request, info: TokenInfo = Depends(require_admin)):
    store = get_store(request)
    region = _within_caller(info, body.region)
    if body.point:
        point_region = await run_in_threadpool(points.point_region, store, body.point)
        if point_region is None or not is_within(point_region, info.region_path):
            raise HTTPException(404, detail="no such point")
    try:
        token = await run_in_threadpool(lambda: users.create_token(store,
            body.role, region, body.point, None, body.description, person=body.person,
            actor=request_actor(request, info), creator=info))
    except StoreError as exc:
        raise _store_error(exc) from None
    return {"token": token, "role": body.role, "region": region}


@api.get("/tokens")
async def list_tokens(request: Request, info: TokenInfo = Depends(require_admin)):
    """The tokens of the caller's region: id, role, region, point, person, state (never the token itself)."""
    return {"tokens": await run_in_threadpool(people.list_tokens, get_store(request), info.region_path)}


@api.post("/tokens/{token_id}/revoke")
async def revoke_token(request: Request, token_id: int = PathParam(ge=1, le=MAX_ID),
                       info: TokenInfo = Depends(require_admin)):
    """Revoke a token of the caller's region: refused here at once, on other collectors within 60 s."""
    try:
        return await run_in_threadpool(lambda: users.revoke_token(
            get_store(request), token_id, request_actor(request, info), info.region_path))
    except StoreError as exc:
        raise _store_error(exc) from None


class EnrollCodeIn(BaseModel):
    point: str = Field(min_length=1, max_length=40)


@api.post("/enroll-codes", status_code=201)
async def create_enroll_code(body: EnrollCodeIn, request: Request, info: TokenInfo = Depends(require_admin)):
    """A one-time code for a point of the caller's region, with the agent's enrol command (shown once)."""
    from collector.accounts import codes

    url = codes.collector_url(request.app.state.settings, str(request.base_url))
    try:
        return await run_in_threadpool(lambda: codes.issue(get_store(request), body.point, url,
                                                           request_actor(request, info), info.region_path))
    except StoreError:
        raise HTTPException(404, detail="no such point") from None


__all__ = ["router", "api", "current_principal"]
