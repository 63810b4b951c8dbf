"""The seam every notifier builds on (Gatus' AlertProvider): ``validate()`` at config load, ``send(payload)``.

``send`` raises :class:`NotifyError` on any failure, with ``retryable`` telling the dispatcher whether a
later attempt can help. HTTP goes through urllib with an explicit proxy (``proxy:``) or none at all: the
collector sits on the private network and reaches the public robots only through a relay or proxy, and
an environment proxy variable must not silently redirect (or break) alert delivery.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from collector.alerts.configbase import AlertConfigError, NotifierConfig
from collector.registry.regions import is_within


class NotifyError(Exception):
    """``reason`` is the metrics label: timeout, connection, http_status, or rejected (the receiver
    answered and said no: a robot's errcode != 0, an SMTP refusal)."""

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
            text = exc.read(2000).decode("utf-8", "replace")
            # 4xx other than throttling will not get better by retrying the same request.
            raise NotifyError(f"HTTP {exc.code}: {text[:300]}", retryable=exc.code >= 500 or exc.code in (408, 429),
                              reason="http_status") from None
        except (urllib.error.URLError, OSError) as exc:
            inner = getattr(exc, "reason", exc)
            timed_out = isinstance(inner, TimeoutError) or "timed out" in str(inner)
            raise NotifyError(f"{type(exc).__name__}: {inner}",
                              reason="timeout" if timed_out else "connection") from None

    @staticmethod
    def robot_answer(status: int, raw: bytes, code_keys=("errcode",), rate_limited=()) -> None:
        """IM robots answer HTTP 200 and put the outcome in the body: read it, never trust the status."""
        try:
            answer = json.loads(raw or b"{}")
        except ValueError:
            raise NotifyError(f"HTTP {status}: not JSON: {raw[:200]!r}", reason="rejected") from None
        for key in code_keys:
            if key in answer:
                code = answer[key]
                if code in (0, "0"):
                    return
                msg = answer.get("errmsg") or answer.get("msg") or answer.get("StatusMessage") or ""
                raise NotifyError(f"{key}={code}: {msg}", retryable=code in rate_limited, reason="rejected")
        raise NotifyError(f"HTTP {status}: no {'/'.join(code_keys)} in answer {raw[:200]!r}", reason="rejected")
