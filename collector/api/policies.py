"""Central policy over HTTP: region nodes' documents, a point's effective policy, the history of changes.

Admins write within their region only; viewers, reviewers and admins read within theirs. Bodies are YAML
(any content type but JSON) or JSON; a document the agent's validator would refuse, for the node or any point
beneath it, is answered 422 naming the field (and the point) and nothing changes.
"""

from __future__ import annotations

import json

import yaml
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from starlette.concurrency import run_in_threadpool

from collector.api.deps import get_store, request_actor, requested_scope, require_admin, require_reader
from collector.policy import service
from collector.policy.documents import PolicyError, annotated_yaml
from collector.registry.regions import RegionError, is_within, normalize_path
from collector.store import TokenInfo, policies

router = APIRouter(prefix="/api/v1/policies", tags=["policy"])
BODY_DOC = {"requestBody": {"required": True, "content": {
    "application/yaml": {"schema": {"type": "string"}},
    "application/json": {"schema": {"type": "object"}}}}}


def _region(path: str) -> str:
    try:
        return normalize_path(path)
    except RegionError as exc:
        raise HTTPException(422, detail=str(exc)) from None


def _refused(exc: PolicyError) -> HTTPException:
    return HTTPException(404 if exc.code == "no_such_point" else 422, detail=exc.as_json())


@router.get("/regions/{path:path}")
async def get_region(path: str, request: Request, auth: TokenInfo = Depends(require_reader)):
    path = _region(path)
    if not is_within(path, auth.region_path):
        raise HTTPException(404, detail="no such region within yours")
    doc = await run_in_threadpool(policies.document, get_store(request), policies.REGION, path)
    return {"region": path, "document": doc}


async def _document_text(request: Request) -> str:
    raw = await request.body()
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(422, detail={"code": "invalid_policy", "message": "the body is not UTF-8 text",
                                         "field": ""}) from None
    if kind == "application/json":
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise HTTPException(422, detail={"code": "invalid_policy", "message": f"the body is not JSON: {exc}",
                                             "field": ""}) from None
        if not isinstance(body, dict):
            raise HTTPException(422, detail={"code": "invalid_policy", "field": "",
                                             "message": "a policy document is a mapping (a JSON object)"})
        return yaml.safe_dump(body, allow_unicode=True, sort_keys=False)
    return text


@router.put("/regions/{path:path}", openapi_extra=BODY_DOC)
async def put_region(path: str, request: Request, auth: TokenInfo = Depends(require_admin)):
    path = _region(path)
    if not is_within(path, auth.region_path):
        raise HTTPException(403, detail="an admin sets the policy of their own region and beneath it only")
    text = await _document_text(request)
    try:
        return await run_in_threadpool(service.set_region, get_store(request), path, text, "request body",
                                       request_actor(request, auth))
    except PolicyError as exc:
        raise _refused(exc) from None


def point_view(store, code: str) -> dict | None:
    """A point's effective policy, where each setting comes from, what was issued and fetched (API and page)."""
    from agent.wire import rfc3339

    try:
        eff = service.show_point(store, code)
    except PolicyError:
        return None
    issued = policies.issued(store, [code])[code]
    current = next((i for i in issued if i.superseded_at is None), None)
    fetched = max((i.fetched_at for i in issued if i.fetched_at), default=None)
    return {"point": code, "digest": eff.digest if eff else None, "policy": eff.policy if eff else None,
            "origin": eff.origin if eff else {}, "levels": eff.levels if eff else [],
            "annotated": annotated_yaml(eff) if eff else None,
            "issued_at": rfc3339(current.issued_at) if current else None,
            "last_fetched_at": rfc3339(fetched) if fetched else None,
            "issued": [{"digest": i.digest, "issued_at": rfc3339(i.issued_at),
                        "superseded_at": rfc3339(i.superseded_at) if i.superseded_at else None,
                        "fetched_at": rfc3339(i.fetched_at) if i.fetched_at else None} for i in issued[:20]]}


@router.get("/points/{code}")
async def get_point(code: str, request: Request, auth: TokenInfo = Depends(require_reader)):
    view = await run_in_threadpool(point_view, get_store(request), code)
    if view is None:
        raise HTTPException(404, detail="no such point")
    return view


@router.get("/history")
async def history(request: Request, region: str = "/", limit: int = Query(100, ge=1, le=1000),
                  auth: TokenInfo = Depends(require_reader)):
    scope = requested_scope(region, auth)
    rows = [] if scope is None else await run_in_threadpool(policies.history, get_store(request), scope, limit)
    return {"changes": rows}
