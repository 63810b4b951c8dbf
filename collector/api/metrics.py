"""GET /metrics (optionally ?region=PATH so a large estate can shard scrape jobs), /healthz, /readyz."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from collector.api.deps import get_store
from collector.metrics import selfmetrics
from collector.metrics.render import FleetCollector
from collector.registry.regions import RegionError, normalize_path
from collector.store import StoreError, read_only_error

router = APIRouter(tags=["metrics"])


def _scrape_allowed(request: Request) -> bool:
    """/metrics is open unless the collector's config names a bearer token for it (settings.metrics_token)."""
    expected = request.app.state.metrics_token
    if expected is None:
        return True
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())


@router.get("/metrics", response_class=Response)
async def metrics(request: Request, region: str | None = None):
    if not _scrape_allowed(request):
        raise HTTPException(401, detail="this collector's /metrics needs its bearer token "
                                        "(Prometheus: authorization: {credentials_file: …})",
                            headers={"WWW-Authenticate": "Bearer"})
    try:
        scope = normalize_path(region or "/")
    except RegionError as exc:
        raise HTTPException(422, detail=str(exc)) from None

    def render() -> bytes:
        # The fleet collector writes its text itself (same bytes as generate_latest, several times faster).
        fleet = FleetCollector(get_store(request), scope, request.app.state.silence_intervals).render()
        # Self-metrics once per collector, on the unsharded scrape only.
        return fleet + (generate_latest(selfmetrics.REGISTRY) if region is None else b"")

    return Response(await run_in_threadpool(render), media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz", response_class=PlainTextResponse)
async def healthz():
    return "ok"


@router.get("/readyz", response_class=PlainTextResponse)
async def readyz(request: Request):
    try:  # ready means a write can be committed: with the disk full or the store read-only reads still work
        await run_in_threadpool(get_store(request).probe_write)
    except StoreError as exc:
        return PlainTextResponse(f"store cannot take writes: {exc}", status_code=503)
    except Exception as exc:  # the database is what readiness is about
        why = "read-only" if read_only_error(exc) else type(exc).__name__
        return PlainTextResponse(f"database unavailable: {why}", status_code=503)
    return "ready"
