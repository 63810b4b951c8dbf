"""net.core.https: the online service channel answers over HTTPS, with a certificate not about to expire."""

from __future__ import annotations

import http.client
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass

from agent.checks import Outcome
from agent.checks.network.settings import NetSettings
from agent.confignode import Node, optional

# A platform certificate this close to expiry is a warning: renewing it on a private network takes weeks.
CERT_WARN_DAYS = 14


@dataclass
class HttpsTarget:
    url: str
    name: str
    expect_status: int | None = None


def parse_target(item: Node) -> HttpsTarget:
    t = item.mapping(("url", "name", "expect_status"), required=("url",))
    url = t["url"].str()
    if not url.startswith(("https://", "http://")):
        t["url"].fail(f"'{url}' is not an http:// or https:// URL")
    return HttpsTarget(url, optional(t, "name", url, Node.str),
                       optional(t, "expect_status", None, lambda n: n.int(100, 599)))


def deadline(settings: NetSettings) -> float:
    return 3 * settings.timeout + 1  # connect, TLS handshake and the response each get one timeout


def probe(target: HttpsTarget, settings: NetSettings) -> Outcome:
    return https_get(target.url, settings.timeout, settings.ca_bundle, target.expect_status)


def https_get(url: str, timeout: float, ca_bundle: str | None = None, expect_status: int | None = None,
              cert_warn_days: int = CERT_WARN_DAYS) -> Outcome:
    """GET ``url`` without following redirects; status code, response time and TLS days left.

    http.client rather than urllib.request: urllib hides the TLS socket, and the certificate's notAfter
    is only readable from it. Certificates are verified against ``ca_bundle`` alone when it is given (the
    private network's CA), else against the system store.
    """
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "", parts.port
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    details: dict = {"url": url}
    t0 = time.perf_counter()
    try:
        if parts.scheme == "https":
            ctx = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"User-Agent": "pointwatch-agent", "Connection": "close"})
            cert = conn.sock.getpeercert() if isinstance(conn.sock, ssl.SSLSocket) else None
            resp = conn.getresponse()
            resp.read(65536)
            status = resp.status
        finally:
            conn.close()
    except ssl.SSLCertVerificationError as exc:
        return Outcome("fail", f"{host} 的证书校验失败：{exc.verify_message}", unit="seconds",
                       details={**details, "result": "tls_verify_failed", "error": exc.verify_message})
    except ssl.SSLError as exc:
        return Outcome("fail", f"与 {host} 的 TLS 握手失败：{exc.reason or exc}", unit="seconds",
                       details={**details, "result": "tls_failed", "error": str(exc.reason or exc)})
    except TimeoutError:
        return Outcome("fail", f"访问 {url} 超时（{timeout:g} 秒）", unit="seconds", details={**details, "result": "timeout"})
    except ConnectionRefusedError:
        return Outcome("fail", f"{host} 拒绝连接", unit="seconds", details={**details, "result": "connection_refused"})
    except socket.gaierror as exc:
        return Outcome("fail", f"无法解析地址 {host}：{exc.strerror}", unit="seconds",
                       details={**details, "result": "resolve_failed"})
    except (OSError, http.client.HTTPException) as exc:
        return Outcome("fail", f"访问 {url} 失败：{exc}", unit="seconds",
                       details={**details, "result": "http_failed", "error": str(exc)})
    elapsed = round(time.perf_counter() - t0, 6)
    details.update(status_code=status, response_s=elapsed)
    days_left = None
    if cert and cert.get("notAfter"):
        days_left = (ssl.cert_time_to_seconds(cert["notAfter"]) - time.time()) / 86400
        details.update(tls_days_left=round(days_left, 1), tls_not_after=cert["notAfter"],
                       tls_subject=_cert_name(cert.get("subject", ())), tls_issuer=_cert_name(cert.get("issuer", ())))
    summary = f"{url} 返回 {status}，用时 {elapsed * 1000:.0f} ms" + (
        f"，证书剩余 {days_left:.0f} 天" if days_left is not None else "")
    if expect_status is not None and status != expect_status:
        return Outcome("fail", f"{summary}（预期 {expect_status}）", value=elapsed, unit="seconds",
                       details={**details, "result": "unexpected_status"})
    if expect_status is None and status >= 500:
        return Outcome("fail", f"服务异常：{summary}", value=elapsed, unit="seconds", details={**details, "result": "server_error"})
    if expect_status is None and status >= 400:
        return Outcome("warn", f"服务可达但返回错误：{summary}", value=elapsed, unit="seconds",
                       details={**details, "result": "client_error"})
    if days_left is not None and days_left < cert_warn_days:
        return Outcome("warn", f"证书即将过期：{summary}", value=elapsed, unit="seconds",
                       details={**details, "result": "cert_expiring"})
    return Outcome("ok", summary, value=elapsed, unit="seconds", details={**details, "result": "ok"})


def _cert_name(rdns) -> str:
    return ", ".join(f"{k}={v}" for rdn in rdns for k, v in rdn)
