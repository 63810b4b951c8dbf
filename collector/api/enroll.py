"""POST /api/v1/enroll: an agent trades a one-time code and its fingerprint for a token."""

from __future__ import annotations

import math

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from collector.accounts import enrolling
from collector.api.bodylimit import ENROLL_CAP
from collector.api.deps import client_source, get_store
from collector.ingest.accept import IngestError, inflate, read_payload
from collector.policy.keyring import policy_keys
from collector.store import StoreError

router = APIRouter(prefix="/api/v1", tags=["enrolment"])
# What the person at the point's PC reads when the agent's enrolment is refused.
# One answer for every bad code (unknown, used, expired or another point's): collector/accounts/enrolling.py.
REFUSED_CN = "注册码无效、已使用、已过期或不属于该服务点"
# Anyone may post here, so what one anonymous request may cost is bounded: at most ENROLL_CAP bytes on the
# wire and again once inflated, parsed on a worker thread, and at most MAX_ENROLLING at once (the rest are
# answered 503 at once: an agent retries its enrolment).
MAX_ENROLLING = 4


class FingerprintIn(BaseModel):
    machine_id: str = Field("", max_length=200)
    serial: str = Field("", max_length=200)
    macs: list[str] = Field(default_factory=list, max_length=64)


class EnrollIn(BaseModel):
    code: str = Field(min_length=4, max_length=64)
    point_code: str = Field(min_length=1, max_length=40)
    hostname: str = Field("", max_length=255)
    fingerprint: FingerprintIn = Field(default_factory=FingerprintIn)


class PolicyKey(BaseModel):
    algorithm: str
    key_id: str
    public_key: str  # base64 of the raw 32-byte Ed25519 public key


class EnrollOut(BaseModel):
    agent_id: str
    token: str
    point_code: str
    # The keys that sign the point's policy (GET /api/v1/agent/policy); the agent pins them.
    policy_keys: list[PolicyKey] = Field(default_factory=list)
    # The release keys (collector.yaml agent_releases.public_keys) that sign agent releases; the agent pins
    # them here only, never from a policy, so a collector's own key cannot introduce one.
    release_keys: list[PolicyKey] = Field(default_factory=list)


ENROLL_BODY_DOC = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/EnrollIn"}}}}}


@router.post("/enroll", response_model=EnrollOut, openapi_extra=ENROLL_BODY_DOC)
async def enroll(request: Request):
    state = request.app.state
    if getattr(state, "enrolling", 0) >= MAX_ENROLLING:
        return JSONResponse({"detail": "采集端繁忙，请稍后重试"}, status_code=503, headers={"Retry-After": "5"})
    state.enrolling = getattr(state, "enrolling", 0) + 1  # one event loop: no lock needed
    try:
        return await _enroll(request)
    finally:
        state.enrolling -= 1


def _parse(raw: bytes, encoding: str | None) -> EnrollIn:
    return EnrollIn.model_validate_json(inflate(raw, encoding, ENROLL_CAP))


async def _enroll(request: Request):
    try:
        raw = await read_payload(request, ENROLL_CAP)
        body = await run_in_threadpool(_parse, raw, request.headers.get("content-encoding"))
    except IngestError as exc:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)
    except ValidationError as exc:
        return JSONResponse({"detail": [{"field": ".".join(map(str, e["loc"])), "problem": e["msg"]}
                                        for e in exc.errors()[:20]]}, status_code=422)
    try:
        agent_id, token = await run_in_threadpool(
            enrolling.enrol, get_store(request), body.code, body.point_code, body.hostname,
            body.fingerprint.model_dump(), client_source(request))
    except enrolling.EnrolLocked as exc:
        wait = max(1, math.ceil(exc.retry_after_s))
        return JSONResponse({"detail": {"code": "enroll_locked", "message": f"注册失败次数过多，请 {wait} 秒后再试"}},
                            status_code=429, headers={"Retry-After": str(wait)})
    except StoreError:
        raise HTTPException(403, detail={"code": "bad_enroll_code", "message": REFUSED_CN}) from None
    pinned = await run_in_threadpool(policy_keys, request.app.state.settings.data_dir)
    release_keys = request.app.state.settings.agent_releases().key_objects()
    return EnrollOut(agent_id=agent_id, token=token, point_code=body.point_code,
                     policy_keys=[PolicyKey(**k) for k in pinned], release_keys=[PolicyKey(**k) for k in release_keys])
