"""Every request body has a size cap, and a caller who is not signed in gets only a small one.

FastAPI reads and parses a route's whole Pydantic body before its dependencies run, so an anonymous 30 MB
POST to /api/v1/users was buffered and parsed (the collector at 1 GB RSS) only to be answered 401. This
ASGI middleware runs first:

- each route has a cap (``ROUTE_CAPS``, else ``DEFAULT_CAP``); a declared Content-Length over it is refused
  413 before a byte is read, and a streamed (chunked) body is counted and refused 413 the moment it passes;
- a caller without valid credentials may send at most ``ANONYMOUS_CAP`` to a route that needs them (enough
  to be answered 401 as usual); a larger or undeclared body is authenticated here, from its headers, before
  it is read, and refused 413 when nobody valid is asking. The principal found is cached on the request
  (``request.state.auth``), so the route's own dependency does not look it up again.
"""

from __future__ import annotations

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from collector.api import csrf
from collector.api.deps import SESSION_COOKIE, current_principal, get_store
from collector.store import people

DEFAULT_CAP = 64 * 1024  # the JSON and form bodies of the API and the pages: users, tokens, silences, codes
ANONYMOUS_CAP = 4 * 1024  # what a caller who is not signed in may send to a route that needs a principal
ENROLL_CAP = 16 * 1024  # an enrolment is a few hundred bytes (collector/api/enroll.py caps it inflated too)
# Routes that anyone may post to, with their caps (the rest need a principal).
# (The login form's cap leaves room for a pasted 10,000-character "password", answered 401 as any other.)
ANONYMOUS_ROUTES = {"/api/v1/enroll": ENROLL_CAP, "/login": 32 * 1024, "/logout": 8 * 1024}
# The points spreadsheet an admin uploads (the API and the page): authenticated before a byte is read.
UPLOAD_CAP = 8 * 1024 * 1024
UPLOAD_ROUTES = {"/api/v1/points/import", "/admin/points/import"}
UPLOAD_ROLES = ("admin",)  # who may upload it (the routes' own dependencies say the same)
BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# Routes that authenticate before they read their body themselves: capped here, not authenticated twice
# (ingest sheds load in its admission step before it looks anyone up: collector/api/ingest.py).
AUTHENTICATE_FIRST = {"/api/v1/reports"}


def route_cap(app, path: str) -> int:
    if path == "/api/v1/reports":
        return app.state.settings.max_body_bytes  # what agents send: reports and batches (1 MiB)
    if path in UPLOAD_ROUTES:
        return UPLOAD_CAP
    if path.startswith("/api/v1/reviews/") and path.endswith("/attachments"):
        from collector.review.files import MAX_BYTES

        return MAX_BYTES  # a review's photo or scanned page (collector/review/files.py)
    return ANONYMOUS_ROUTES.get(path, DEFAULT_CAP)


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse({"detail": f"request body is over {limit} bytes"}, status_code=413)


class BodyLimit:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        limit = route_cap(scope["app"], path)
        headers = dict(scope.get("headers") or ())
        declared = headers.get(b"content-length", b"").decode("latin-1").strip()
        size = int(declared) if declared.isdigit() else None
        if size is None and b"transfer-encoding" not in headers:
            size = 0  # HTTP/1.1: neither header, no body (a DELETE); still counted below
        if size is not None and size > limit:
            return await _too_large(limit)(scope, receive, send)
        if path in UPLOAD_ROUTES:
            # Up to 8 MiB of spreadsheet is parsed only for an admin: anyone else is answered before a byte
            # is read (the route's own dependency would refuse them only after the form was parsed).
            who = await _principal(scope, headers)
            if who is None and (size is None or size > ANONYMOUS_CAP):
                return await _too_large(ANONYMOUS_CAP)(scope, receive, send)
            if who is not None and who.role not in UPLOAD_ROLES:
                return await _forbidden(who.role)(scope, receive, send)
        elif path not in ANONYMOUS_ROUTES and path not in AUTHENTICATE_FIRST and (size is None or size > ANONYMOUS_CAP):
            if await _principal(scope, headers) is None:
                return await _too_large(ANONYMOUS_CAP)(scope, receive, send)

        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # a chunked body, or one longer than it declared
                    raise HTTPException(413, detail=f"request body is over {limit} bytes")
            return message

        return await self.app(scope, counted, send)


def _forbidden(role: str) -> JSONResponse:
    return JSONResponse({"detail": f"role '{role}' may not do this (needs {' or '.join(UPLOAD_ROLES)})"},
                        status_code=403)


async def _principal(scope, headers: dict):
    """The valid principal the request's headers name (a bearer token or a session), found without reading
    its body; None when there is none."""
    if not headers.get(b"authorization") and SESSION_COOKIE.encode() not in headers.get(b"cookie", b""):
        return None
    request = Request(scope)
    try:
        if headers.get(b"authorization") or request.headers.get(csrf.HEADER):
            return await current_principal(request)
        # A form with the session cookie (an upload) carries its CSRF token inside the body, not read yet:
        # here only the session and the origin are checked; the route's own dependency checks the token.
        csrf.check_origin(request)
        return await run_in_threadpool(people.session_info, get_store(request),
                                       request.cookies.get(SESSION_COOKIE, ""))
    except HTTPException:  # malformed header, revoked token, another origin: nobody
        return None
