"""GET /api/v1/evidence/…: signed evidence bundles for the reviewer role, streamed as they are written.

- ``/api/v1/evidence/public-key`` — the collector's Ed25519 public key (PEM), no login needed: it is public.
- ``/api/v1/evidence/points/{code}.zip?from=2026-01-01&to=2026-03-31`` — one point's bundle.
- ``/api/v1/evidence/region.zip?region=甘肃省/兰州市/城关区&from=…&to=…`` — every point beneath a region.

The zip is produced by a worker thread into a bounded queue and sent while it is written, so a 90-day
bundle starts downloading at once and the collector never holds it whole.
"""

from __future__ import annotations

import io
import queue
import threading
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from collector.api.deps import actor_name, check_region, get_store, requested_scope, require_roles
from collector.store import TokenInfo, queries

router = APIRouter(prefix="/api/v1/evidence", tags=["evidence"])
EXPORT_ROLES = ("reviewer",)
CHUNK = 1 << 16


# The 监督 role exports; admins (管理) deliberately cannot, so whoever runs a region cannot hand out its proof.
require_reviewer = require_roles(*EXPORT_ROLES)


def _key(request: Request):
    from collector.evidence.keys import load_or_create

    return load_or_create(request.app.state.settings.data_dir)


PEM_DOC = {200: {"description": "the Ed25519 public key, PEM", "content": {"application/x-pem-file": {}}}}
ZIP_DOC = {200: {"description": "the signed bundle (streamed)",
                 "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}}}


class _PemResponse(PlainTextResponse):
    media_type = "application/x-pem-file"


class _ZipResponse(StreamingResponse):
    media_type = "application/zip"


@router.get("/public-key", response_class=_PemResponse, responses=PEM_DOC)
async def public_key(request: Request):
    from collector.evidence.keys import key_id, public_pem

    key = await run_in_threadpool(_key, request)
    return PlainTextResponse(public_pem(key.public_key()),
                             headers={"X-Key-Id": key_id(key.public_key())}, media_type="application/x-pem-file")


class _Cancelled(Exception):
    pass


class _QueueWriter(io.RawIOBase):
    """A write-only, unseekable stream feeding a bounded queue (zipfile then writes data descriptors)."""

    def __init__(self, q: queue.Queue, cancelled: threading.Event):
        self.q, self.cancelled, self.buf = q, cancelled, bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.buf += b
        if len(self.buf) >= CHUNK:
            self._put(bytes(self.buf))
            self.buf.clear()
        return len(b)

    def _put(self, item) -> None:
        while True:
            if self.cancelled.is_set():
                raise _Cancelled()
            try:
                self.q.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def finish(self, error: BaseException | None = None) -> None:
        if self.buf and error is None:
            self._put(bytes(self.buf))
        self._put(error if error is not None else None)


def _stream(run) -> StreamingResponse:
    q: queue.Queue = queue.Queue(maxsize=32)
    cancelled = threading.Event()
    writer = _QueueWriter(q, cancelled)

    def work():
        try:
            run(writer)
        except _Cancelled:
            return
        except BaseException as exc:  # reported to the reader: the response is cut short, never truncated silently
            try:
                writer.finish(exc)
            except _Cancelled:
                pass
            return
        try:
            writer.finish()
        except _Cancelled:
            pass

    def chunks():
        thread = threading.Thread(target=work, name="evidence-export", daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise RuntimeError(f"evidence export failed: {item}") from item
                yield item
        finally:
            cancelled.set()

    return StreamingResponse(chunks(), media_type="application/zip")


def _period(since: str, until: str):
    from collector.evidence.period import PeriodError, parse_period

    try:
        return parse_period(since, until)
    except PeriodError as exc:
        raise HTTPException(422, detail=str(exc)) from None


def _attachment(resp: StreamingResponse, name: str) -> StreamingResponse:
    resp.headers["Content-Disposition"] = f"attachment; filename=\"evidence.zip\"; filename*=UTF-8''{quote(name)}"
    return resp


@router.get("/points/{code}.zip", response_class=_ZipResponse, responses=ZIP_DOC)
async def point_bundle(code: str, request: Request, since: str = Query(..., alias="from"),
                       until: str = Query(..., alias="to"), auth: TokenInfo = Depends(require_reviewer)):
    from collector.evidence.bundle import export

    store = get_store(request)
    summary = await run_in_threadpool(queries.point_summary, store, code, None, request.app.state.silence_intervals)
    if summary is None:
        raise HTTPException(404, detail="no such point")
    check_region(auth, summary.region_path)
    period = _period(since, until)
    key = await run_in_threadpool(_key, request)
    source = request.client.host if request.client else None
    resp = _stream(lambda out: export(store, key, out, period, codes=[code], actor=actor_name(auth), source=source,
                                        silence_intervals=request.app.state.silence_intervals))
    return _attachment(resp, f"evidence-{code}-{period.given_from}-{period.given_to}.zip")


@router.get("/region.zip", response_class=_ZipResponse, responses=ZIP_DOC)
async def region_bundle(request: Request, region: str = Query(...), since: str = Query(..., alias="from"),
                        until: str = Query(..., alias="to"), auth: TokenInfo = Depends(require_reviewer)):
    from collector.evidence.bundle import export
    scope = requested_scope(region, auth)  # asked above their node: the part they may see
    if scope is None:
        raise HTTPException(404, detail="no such region")
    store = get_store(request)
    if not await run_in_threadpool(queries.list_points, store, scope, None, request.app.state.silence_intervals):
        raise HTTPException(404, detail="no points beneath this region")
    period = _period(since, until)
    key = await run_in_threadpool(_key, request)
    source = request.client.host if request.client else None
    resp = _stream(lambda out: export(store, key, out, period, region=scope, actor=actor_name(auth), source=source,
                                        silence_intervals=request.app.state.silence_intervals))
    return _attachment(resp, f"evidence-{scope.replace('/', '-')}-{period.given_from}-{period.given_to}.zip")
