"""Sending reports to the collector over HTTPS with the standard library only (the agent stays light)."""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import ssl
import time
import urllib.error
import urllib.request

from agent import __version__

log = logging.getLogger(__name__)


class SendError(Exception):
    """The collector did not acknowledge; ``retry`` says whether sending the same batch again can help."""

    def __init__(self, message: str, status: int | None = None, retry: bool = True, body: str = "",
                 unanswered: bool = False):
        super().__init__(message)
        self.status, self.retry, self.body = status, retry, body
        # Nothing came back at all (no connection, a timeout, a cut mid-answer): the upgrade trial's watchdog
        # tells a line that was down from a collector that answered (agent/upgrade/manager.py). False when
        # anything answered, even a 2xx without an acknowledgement.
        self.unanswered = unanswered


def ssl_context(ca_bundle: str | None, insecure: bool) -> ssl.SSLContext:
    if insecure:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()


class _RefuseRedirect(urllib.request.HTTPRedirectHandler):
    """The agent talks to its collector only: a redirect is answered as the error it is, never followed.
    urllib would follow it carrying the Authorization header (the agent's token) to wherever Location
    points; returning None here makes urllib raise the 3xx as an HTTPError instead."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        log.warning("collector_redirect_refused status=%s location=%s", code, newurl)
        return None


# time.monotonic() of the last HTTP answer (any status) to any request of this process: the upgrade trial's
# watchdog asks whether the collector answered anything while the trial ran (agent/upgrade/manager.py), so a
# build whose reports go nowhere while its policy fetches are answered is the build's fault, not the line's.
_last_answer = 0.0


def last_answer() -> float:
    return _last_answer


def open_url(req: urllib.request.Request, timeout: float, ctx: ssl.SSLContext | None = None):
    """``urlopen`` without following redirects (ctx for https URLs). Every request of the agent goes here."""
    global _last_answer

    handlers: list = [_RefuseRedirect()]
    if ctx is not None and req.full_url.startswith("https"):
        handlers.append(urllib.request.HTTPSHandler(context=ctx))
    try:
        resp = urllib.request.build_opener(*handlers).open(req, timeout=timeout)
    except urllib.error.HTTPError:
        _last_answer = time.monotonic()
        raise
    _last_answer = time.monotonic()
    return resp


def redirect_refused(exc: urllib.error.HTTPError) -> str | None:
    """What to say of a refused redirect (None: ``exc`` is no redirect)."""
    if not 300 <= exc.code < 400 or exc.code == 304:
        return None
    return (f"collector answered {exc.code} redirecting to {exc.headers.get('Location')!r}; the agent follows no "
            "redirect (its token goes to the configured collector URL only): set collector.url to the final URL")


def post_json(url: str, payload: dict, token: str | None, timeout: float, ctx: ssl.SSLContext | None = None) -> dict:
    body = gzip.compress(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip",
               "User-Agent": f"pointwatch-agent/{__version__}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with open_url(req, timeout, ctx) as resp:
            text = resp.read().decode("utf-8", errors="replace")
            return json.loads(text) if text else {}
    except urllib.error.HTTPError as exc:
        if (refused := redirect_refused(exc)) is not None:  # a setting to fix; the batch stays for later
            raise SendError(refused, exc.code, retry=True) from None
        detail = exc.read(2000).decode("utf-8", errors="replace")
        # 4xx other than 408/429 means this batch will never be accepted as it is; 5xx may pass later.
        retry = exc.code >= 500 or exc.code in (408, 429)
        raise SendError(f"collector answered {exc.code}: {detail}", exc.code, retry) from None
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        # HTTPException: the collector died mid-answer (IncompleteRead, RemoteDisconnected is an OSError
        # too); not an OSError, and uncaught it ended the sender thread for good.
        reason = getattr(exc, "reason", exc)
        raise SendError(f"cannot reach collector: {reason}", unanswered=True) from None


def send_reports(base_url: str, token: str, reports: list[dict], timeout: float, ctx=None) -> dict:
    """The collector's acknowledgement (``{"accepted": n, "duplicates": m}``), or SendError (retry). Any other
    2xx (an empty body, ``{}``, a proxy's JSON of its own) acknowledges nothing: taken as one, it deleted the
    batch from the outbox and committed an upgrade trial whose report never reached the collector."""
    answer = post_json(f"{base_url}/api/v1/reports", {"reports": reports}, token, timeout, ctx)
    accepted = answer.get("accepted") if isinstance(answer, dict) else None
    if isinstance(accepted, bool) or not isinstance(accepted, int):
        raise SendError(f"collector answered without an acknowledgement: {json.dumps(answer)[:200]}", retry=True)
    return answer


def get(url: str, token: str | None, timeout: float, ctx: ssl.SSLContext | None = None, etag: str | None = None,
        limit: int = 1024 * 1024) -> tuple[int, str | None, bytes]:
    """``(status, ETag, body)`` of a GET; 304 (``If-None-Match: "etag"`` matched) comes back with no body.
    Any other answer but 2xx, a body over ``limit`` bytes, or no answer raises :class:`SendError`."""
    headers = {"Accept": "application/json", "User-Agent": f"pointwatch-agent/{__version__}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if etag:
        headers["If-None-Match"] = f'"{etag}"'
    req = urllib.request.Request(url, headers=headers, method="GET")
    try:
        with open_url(req, timeout, ctx) as resp:
            body = resp.read(limit + 1)
            if len(body) > limit:
                raise SendError(f"collector answered more than {limit} bytes", resp.status, retry=False)
            return resp.status, resp.headers.get("ETag"), body
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            return 304, exc.headers.get("ETag"), b""
        if (refused := redirect_refused(exc)) is not None:
            raise SendError(refused, exc.code, retry=True) from None
        detail = exc.read(2000).decode("utf-8", errors="replace")
        raise SendError(f"collector answered {exc.code}: {detail}", exc.code, exc.code >= 500, detail) from None
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise SendError(f"cannot reach collector: {reason}", unanswered=True) from None
