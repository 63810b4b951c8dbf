"""The seam every notifier builds on (Gatus' AlertProvider): ``validate()`` at config load, ``send(payload)``.

``send`` raises :class:`NotifyError` on any failure, with ``retryable`` telling the dispatcher whether a
later attempt can help. HTTP goes through urllib with an explicit proxy (``proxy:``) or none at all: the
collector sits on the private network and reaches the public robots only through a relay or proxy, and
an environment proxy variable must not silently redirect (or break) alert delivery.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from http import HTTPStatus
from urllib.parse import urlsplit

from collector.alerts.configbase import AlertConfigError, NotifierConfig
from collector.registry.regions import is_within


class NotifyError(Exception):
    """``reason`` is the metrics label: timeout, connection, http_status, or rejected (the receiver
    answered and said no: a robot's errcode != 0, an SMTP refusal).

    The message is stored with the notification and shown to every viewer of the alert, so it is only ever
    a status and a redacted reason (an HTTP status and its standard phrase, an error class, a robot's
    errcode): never a URL, a query string, a header value or the receiver's own words, since a relay that
    echoes its request back would otherwise put the robot's key on the page (issue 18, item 11).
    """

    def __init__(self, message: str, retryable: bool = True, reason: str = "connection"):
        super().__init__(message)
        self.retryable = retryable
        self.reason = reason


class Notifier:
    type = ""
    required: tuple[str, ...] = ("url",)
    optional: tuple[str, ...] = ("proxy", "headers")

    def __init__(self, cfg: NotifierConfig):
        self.cfg = cfg
        self.name = cfg.name
        self.opts = cfg.options

    def validate(self) -> None:
        where = f"alerts.notifiers[{self.name}]"
        missing = [k for k in self.required if not self.opts.get(k)]
        if missing:
            raise AlertConfigError(f"{where}: {self.type} needs {', '.join(missing)}")
        unknown = sorted(set(self.opts) - set(self.required) - set(self.optional))
        if unknown:
            raise AlertConfigError(f"{where}: unknown key(s) {', '.join(unknown)} for type {self.type}")
        for key in ("url", "proxy"):
            if self.opts.get(key):
                parts = urlsplit(str(self.opts[key]))
                if parts.scheme not in ("http", "https") or not parts.hostname:
                    raise AlertConfigError(f"{where}.{key}: '{self.opts[key]}' is not an http(s) URL")

    def wants(self, severity: str, region_path: str) -> bool:
        if self.cfg.severities and severity not in self.cfg.severities:
            return False
        return not self.cfg.regions or any(is_within(region_path, r) for r in self.cfg.regions)

    def send(self, payload: dict) -> None:
        raise NotImplementedError

    # -- shared HTTP ---------------------------------------------------------------------------------
    def post_json(self, url: str, body, headers: dict | None = None) -> tuple[int, bytes]:
        proxy = self.opts.get("proxy")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler(
            {"http": proxy, "https": proxy} if proxy else {}))
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        req = urllib.request.Request(url, data=data, method="POST", headers={
            "Content-Type": "application/json; charset=utf-8", "User-Agent": "pointwatch-collector",
            **{str(k): str(v) for k, v in (self.opts.get("headers") or {}).items()}, **(headers or {})})
        try:
            with opener.open(req, timeout=self.cfg.timeout_s) as resp:
                return resp.status, resp.read(1024 * 1024)
        except urllib.error.HTTPError as exc:
            # 4xx other than throttling will not get better by retrying the same request. The body and the
            # receiver's reason phrase are not kept: either may echo the URL or the headers.
            raise NotifyError(http_status(exc.code), retryable=exc.code >= 500 or exc.code in (408, 429),
                              reason="http_status") from None
        except (urllib.error.URLError, OSError) as exc:
            inner = getattr(exc, "reason", exc)
            timed_out = isinstance(inner, TimeoutError) or "timed out" in str(inner)
            raise NotifyError("timeout" if timed_out else f"connection failed ({error_class(inner)})",
                              reason="timeout" if timed_out else "connection") from None

    @staticmethod
    def robot_answer(status: int, raw: bytes, code_keys=("errcode",), rate_limited=()) -> None:
        """IM robots answer HTTP 200 and put the outcome in the body: read it, never trust the status."""
        try:
            answer = json.loads(raw or b"{}")
        except ValueError:
            raise NotifyError(f"{http_status(status)}: answer is not JSON", reason="rejected") from None
        if not isinstance(answer, dict):
            answer = {}
        for key in code_keys:
            if key in answer:
                code = answer[key]
                if code in (0, "0"):
                    return
                msg = answer.get("errmsg") or answer.get("msg") or answer.get("StatusMessage") or ""
                shown = _code(code) + (f": {msg}" if isinstance(msg, str) and _PLAIN_PHRASE.match(msg) else "")
                raise NotifyError(f"{key}={shown}", retryable=code in rate_limited, reason="rejected")
        raise NotifyError(f"{http_status(status)}: no {'/'.join(code_keys)} in answer", reason="rejected")


# A robot's own errmsg is kept only when it is a short phrase of plain words ("token is not exist",
# "send too fast"): no digits, slashes, '=', '?', '&' or '%', so neither a key nor a URL can ride in it.
_PLAIN_PHRASE = re.compile(r"^[A-Za-z][A-Za-z ,.'_-]{0,59}$")


def _code(code) -> str:
    return str(code) if isinstance(code, int) or (isinstance(code, str) and code.lstrip("-").isdigit()
                                                  and len(code) <= 12) else "(not a number)"


def http_status(code: int) -> str:
    """"HTTP 503 Service Unavailable": the status and its standard phrase, never the receiver's."""
    try:
        return f"HTTP {code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"HTTP {code}"


def error_class(exc: BaseException | object) -> str:
    """An exception by its class alone ("ConnectionRefusedError"): its text may name the host or the URL."""
    return type(exc).__name__ if isinstance(exc, BaseException) else "error"
