"""Agent releases for agents: the signed manifest and the file, for the token's own point only.

``GET /api/v1/agent/releases/{version}/{platform}`` answers the manifest envelope bytes as they were signed;
``…/file`` the release file, resumable with ``Range: bytes=N-`` (206 and Content-Range; 416 for a range the
file cannot answer), streamed from the file's chunks in the database. Both refuse the same way
(collector/releases/serving.py): 404 ``no_release``, 403 ``not_in_policy``, 409 ``rollout_paused``, 500
``release_file_damaged``.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from collector.api.agentpolicy import ENVELOPE_SCHEMA
from collector.api.deps import get_store, require_agent
from collector.releases import serving
from collector.store import TokenInfo, releasefiles

router = APIRouter(prefix="/api/v1/agent/releases", tags=["agent releases"])
# The refusals of this route carry {"code", "message"} in detail; a refused role a sentence.
REFUSAL = {"content": {"application/json": {"schema": {"type": "object", "properties": {"detail": {}}}}}}
REFUSALS = {404: {"description": "no_release: not held", **REFUSAL},
            403: {"description": "not_in_policy: the point's policy does not name this version", **REFUSAL},
            409: {"description": "rollout_paused: the release is paused", **REFUSAL},
            500: {"description": "release_file_damaged: the file's chunks do not make up the file (chunk, problem)",
                  **REFUSAL}}
BYTES = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
MANIFEST_RESPONSES = {200: {"description": "the signed manifest envelope, as signed",
                            "content": {"application/json": {"schema": ENVELOPE_SCHEMA}}}, **REFUSALS}
FILE_RESPONSES = {200: {"description": "the release file", "content": BYTES},
                  206: {"description": "the bytes of the range asked for (Content-Range)", "content": BYTES},
                  416: {"description": "a range this file cannot answer (Content-Range: bytes */size)"}, **REFUSALS}


async def _decide(request: Request, auth: TokenInfo, version: str, platform: str) -> serving.Decision:
    if not auth.point_code:
        raise HTTPException(403, detail="this token reports for no point")
    decision = await run_in_threadpool(serving.decide, get_store(request), auth.point_code, version, platform)
    if decision.refusal is not None:
        raise HTTPException(serving.STATUS[decision.refusal], detail=decision.detail())
    return decision


@router.get("/{version}/{platform}", responses=MANIFEST_RESPONSES, response_class=Response)
async def release_manifest(version: str, platform: str, request: Request, auth: TokenInfo = Depends(require_agent)):
    decision = await _decide(request, auth, version, platform)
    return Response(decision.release.manifest, media_type="application/json", headers={"Cache-Control": "no-cache"})


@router.get("/{version}/{platform}/file", responses=FILE_RESPONSES, response_class=Response)
async def release_file(version: str, platform: str, request: Request, auth: TokenInfo = Depends(require_agent)):
    decision = await _decide(request, auth, version, platform)
    release = decision.release
    size = release.size
    headers = {"Accept-Ranges": "bytes", "ETag": f'"{release.sha256}"', "Cache-Control": "no-cache",
               "Content-Disposition": f'attachment; filename="{release.file_name}"'}
    wanted = serving.byte_range(request.headers.get("range"), size)
    if wanted is False:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    first, last = wanted or (0, size - 1)
    headers["Content-Length"] = str(last - first + 1)
    body = releasefiles.read(get_store(request), release.sha256, size, first, last)
    if wanted is None:
        return StreamingResponse(body, media_type="application/octet-stream", headers=headers)
    headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    return StreamingResponse(body, status_code=206, media_type="application/octet-stream", headers=headers)
