"""Administration pages, people: users (create, disable and enable, reset a password) and API tokens
(create, list, revoke), for admins within their region.

Thin: the rules (names, passwords, the duty split of collector/accounts/duties.py) are
collector/accounts/users.py's, the same the JSON API (collector/api/auth.py) and the CLI call; every write
is audited by the store. A secret (a new token) is shown once, on the answer to the form that made it.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from agent.vocabulary import READ_ROLES
from collector.accounts import users
from collector.api.admin_points import SECRET_HEADERS
from collector.api.deps import MAX_ID, get_store, request_actor, require_page_admin
from collector.api.ui import render
from collector.registry.regions import RegionError, is_within, normalize_path
from collector.store import StoreError, TokenInfo, people

router = APIRouter(include_in_schema=False)


def _back(path: str, **params) -> RedirectResponse:
    return RedirectResponse(path + "?" + urlencode({k: v[:300] for k, v in params.items()}), status_code=303)


def _region_within(region: str, info: TokenInfo) -> str:
    try:
        region = normalize_path(region.strip() or info.region_path)
    except RegionError as exc:
        raise StoreError("bad_region", f"区域写法不对：{exc}") from None
    if not is_within(region, info.region_path):
        raise StoreError("region_outside_scope", f"“{region}”不在您的管辖区域“{info.region_path}”内")
    return region


def _users_page(request: Request, info: TokenInfo, notice: str = "", error: str = "", values: dict | None = None,
                ):
    rows = people.list_users(get_store(request), info.region_path)
    response = render(request, "admin_users.html", {
        "users_list": rows, "roles": READ_ROLES, "notice": notice[:300], "error": error[:300],
        "values": values or {"region": info.region_path}, "min_password": users.MIN_PASSWORD,
        "me": info.actor.split(":", 1)[-1]}, nav="admin")
    return response


@router.get("/admin/users", response_class=HTMLResponse)
async def users_page(request: Request, notice: str = "", error: str = "", info: TokenInfo = Depends(require_page_admin)):
    return await run_in_threadpool(_users_page, request, info, notice, error)


@router.post("/admin/users", response_class=HTMLResponse)
async def create_user(request: Request, username: str = Form(""), person: str = Form(""), role: str = Form(""),
                      region: str = Form(""), password: str = Form(""), password2: str = Form(""),
                      info: TokenInfo = Depends(require_page_admin)):
    values = {"username": username[:60], "person": person[:120], "role": role, "region": region[:400]}

    def run():
        if password != password2:
            raise StoreError("password_mismatch", "两次输入的密码不一致")
        where = _region_within(region, info)
        users.create_user(get_store(request), username, password, role, where, person, request_actor(request, info),
                          info)
        return where

    try:
        where = await run_in_threadpool(run)
    except StoreError as exc:
        return await run_in_threadpool(_users_page, request, info, "", str(exc), values)
    return _back("/admin/users", notice=f"用户 {username.strip()}（{role}，{where}）已创建")


async def _user_action(request: Request, info: TokenInfo, action, done: str):
    try:
        await run_in_threadpool(action, get_store(request), request_actor(request, info))
    except StoreError as exc:
        return _back("/admin/users", error=str(exc))
    return _back("/admin/users", notice=done)


@router.post("/admin/users/{username}/disable")
async def disable_user(username: str, request: Request, info: TokenInfo = Depends(require_page_admin)):
    return await _user_action(request, info, lambda store, actor: users.set_disabled(
        store, username, True, actor, info.region_path), f"用户 {username} 已停用：会话已结束，令牌已吊销")


@router.post("/admin/users/{username}/enable")
async def enable_user(username: str, request: Request, info: TokenInfo = Depends(require_page_admin)):
    return await _user_action(request, info, lambda store, actor: users.set_disabled(
        store, username, False, actor, info.region_path), f"用户 {username} 已启用")


@router.post("/admin/users/{username}/password")
async def reset_password(username: str, request: Request, password: str = Form(""),
                         info: TokenInfo = Depends(require_page_admin)):
    return await _user_action(request, info, lambda store, actor: users.set_password(
        store, username, password, actor, creator=info), f"用户 {username} 的密码已重设，其会话已全部结束")


def _tokens_page(request: Request, info: TokenInfo, notice: str = "", error: str = "", created: dict | None = None,
                 values: dict | None = None):
    rows = people.list_tokens(get_store(request), info.region_path)
    response = render(request, "admin_tokens.html", {
        "tokens": rows, "roles": READ_ROLES, "notice": notice[:300], "error": error[:300], "created": created,
        "values": values or {"region": info.region_path}}, nav="admin")
    if created:
        response.headers.update(SECRET_HEADERS)
    return response


@router.get("/admin/tokens", response_class=HTMLResponse)
async def tokens_page(request: Request, notice: str = "", error: str = "", info: TokenInfo = Depends(require_page_admin)):
    return await run_in_threadpool(_tokens_page, request, info, notice, error)


@router.post("/admin/tokens", response_class=HTMLResponse)
async def create_token(request: Request, role: str = Form(""), region: str = Form(""), person: str = Form(""),
                       description: str = Form(""), info: TokenInfo = Depends(require_page_admin)):
    values = {"role": role, "region": region[:400], "person": person[:120], "description": description[:200]}

    def run():
        where = _region_within(region, info)
        if role not in READ_ROLES:  # an agent's token comes from its enrolment code, bound to its point
            raise StoreError("bad_role", "令牌角色须为查看员、评审员或管理员（终端令牌通过注册码获得）")
        token = users.create_token(get_store(request), role, where, None, None, description.strip()[:200] or None,
                                   person=person, actor=request_actor(request, info), creator=info)
        return {"token": token, "role": role, "region": where, "person": person.strip()}

    try:
        created = await run_in_threadpool(run)
    except StoreError as exc:
        return await run_in_threadpool(_tokens_page, request, info, "", str(exc), None, values)
    return await run_in_threadpool(_tokens_page, request, info, "", "", created)


@router.post("/admin/tokens/{token_id}/revoke")
async def revoke_token(request: Request, token_id: int = PathParam(ge=1, le=MAX_ID),
                       info: TokenInfo = Depends(require_page_admin)):
    try:
        t = await run_in_threadpool(users.revoke_token, get_store(request), token_id, request_actor(request, info),
                                    info.region_path)
    except StoreError as exc:
        return _back("/admin/tokens", error=str(exc))
    return _back("/admin/tokens", notice=f"令牌 {t['id']} 已吊销（其他采集端在 60 秒内生效）")
