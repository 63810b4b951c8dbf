"""GET /api/v1/agent/policy: the agent's own point's effective policy, signed (the wire contract).

The point is the token's point; nothing in the request can name another. The answer is the envelope
``{"payload": base64(payload JSON), "signatures": [{key_id, signature}]}`` with ``ETag: "<digest>"``; a
request whose ``If-None-Match`` is the current digest is answered 304 (except while a key rotation is
announced: the payload then carries ``announce_keys``, which an agent must see). Every answer records when
the point's agent fetched (the point's policy page shows it; key rotation waits for it).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from agent.wire import rfc3339
from collector.api.deps import get_store, require_agent
from collector.policy import keyring, service
from collector.store import TokenInfo, policies, utcnow

router = APIRouter(prefix="/api/v1/agent", tags=["policy"])
NO_POLICY_CN = "该服务点尚无下发的检查策略，代理按本地配置检查"
FORMAT = 1


def _answer(store, data_dir, code: str, if_none_match: str | None) -> tuple[int, bytes | None, str | None]:
    # The fetch is recorded at a moment before the answer is made: a next key announced after that moment
    # (its file's mtime, keyring.announced_since) is one this answer may lack, and `policy keys switch`
    # must still wait for this point. Stamped after the answer, a fetch racing `policy keys next` counted
    # as having seen an announcement it never carried, and the switch stranded that agent on the old key.
    fetched_at = utcnow()
    issued, _ = service.current(store, code)
    if issued is None:
        return 404, None, None
    etag = f'"{issued.digest}"'
    unchanged = if_none_match is not None and if_none_match.strip() == etag
    body = None
    if not unchanged or keyring.announced_since(data_dir) is not None:
        payload = {"format": FORMAT, "point": code, "digest": issued.digest, "issued_at": rfc3339(issued.issued_at),
                   "policy": issued.policy}
        body, _ = keyring.envelope(data_dir, payload)
    policies.mark_fetched(store, code, issued.digest, fetched_at)
    return (200 if body is not None else 304), body, etag


ENVELOPE_SCHEMA = {
    "type": "object", "required": ["payload", "signatures"],
    "properties": {"payload": {"type": "string", "description": "base64 of the payload JSON (UTF-8)"},
                   "signatures": {"type": "array", "items": {
                       "type": "object", "required": ["key_id", "signature"],
                       "properties": {"key_id": {"type": "string"}, "signature": {"type": "string"}}}}}}
RESPONSES = {
    200: {"description": "the signed policy envelope; `ETag: \"<digest>\"`",
          "content": {"application/json": {"schema": ENVELOPE_SCHEMA}}},
    304: {"description": "unchanged: If-None-Match is the current digest (no body)"},
}


@router.get("/policy", responses=RESPONSES)
async def agent_policy(request: Request, auth: TokenInfo = Depends(require_agent)):
    if not auth.point_code:
        raise HTTPException(403, detail="this token reports for no point")
    status, body, etag = await run_in_threadpool(_answer, get_store(request), request.app.state.settings.data_dir,
                                                 auth.point_code, request.headers.get("if-none-match"))
    if status == 404:
        raise HTTPException(404, detail={"code": "no_policy", "message": NO_POLICY_CN})
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if status == 304:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)
