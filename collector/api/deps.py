"""Request dependencies shared by routers: the store and who is asking."""

from __future__ import annotations

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool

from collector.regions import is_within
from collector.store import Store, TokenInfo

READ_ROLES = ("viewer", "reviewer", "admin")


def get_store(request: Request) -> Store:
    return request.app.state.store


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


async def require_token(request: Request) -> TokenInfo:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("missing bearer token (Authorization: Bearer …)")
    info = await run_in_threadpool(get_store(request).authenticate, token.strip())
    if info is None:
        raise _unauthorized("invalid or revoked token")
    request.state.auth = info
    return info


async def require_reader(request: Request) -> TokenInfo:
    info = await require_token(request)
    if info.role not in READ_ROLES:
        raise HTTPException(403, detail=f"role '{info.role}' may not read this")
    return info


def check_region(info: TokenInfo, region_path: str) -> None:
    """Outside the caller's region a point does not exist for them: 404, so codes cannot be probed."""
    if not is_within(region_path, info.region_path):
        raise HTTPException(404, detail="no such point")
