"""ICMP, TCP and HTTP probes of a network device (kiosk, queue-ticket machine, display, camera …).

ICMP and TCP reuse the core-network probes of :mod:`agent.checks.network`, so a device is pinged exactly
as the core gateway is (including the TCP fallback where ICMP is not permitted).
"""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from agent.checks.devices.common import DeviceConfig, MethodResult, ProbeContext, absent, broken, ok, warn
from agent.checks.network.icmp import icmp_echoes
from agent.checks.network.tcp import tcp_connect
from agent.confignode import Node, optional

ICMP_COUNT = 2  # echoes per device: enough to tell "up" from one lost packet, cheap on a village line


@dataclass
class IcmpConfig:
    host: str
    count: int = ICMP_COUNT


@dataclass
class TcpConfig:
    host: str
    port: int


@dataclass
class HttpConfig:
    url: str
    expect_status: int | None = None
    contains: str | None = None
    verify_tls: bool = False  # device health pages use self-signed certificates almost without exception


def parse_icmp(node: Node, device: DeviceConfig) -> IcmpConfig:
    """``icmp: HOST`` or ``icmp: {host, count}``."""
    if not node.is_mapping():
        return IcmpConfig(node.host())
    m = node.mapping(("host", "count"), required=("host",))
    return IcmpConfig(m["host"].host(), optional(m, "count", ICMP_COUNT, lambda n: n.int(1, 10)))


def parse_tcp(node: Node, device: DeviceConfig) -> list[TcpConfig]:
    """``tcp: 8080``, ``tcp: "10.0.0.5:8080"``, or a list of those; a bare port uses the device's host."""
    default_host = device.host
    items = node.items() if isinstance(node.value, list) else [node]
    if not items:
        node.fail("must name at least one port")
    out = []
    for item in items:
        if isinstance(item.value, int) or (isinstance(item.value, str) and item.value.isdigit()):
            if not default_host:
                item.fail("a bare port needs the device's host (give 'host', 'icmp' or use host:port)")
            out.append(TcpConfig(default_host, item.port()))
        else:
            host, port = item.host_port()
            out.append(TcpConfig(host, port))
    return out


def parse_http(node: Node, device: DeviceConfig) -> HttpConfig:
    """``http: URL`` or ``http: {url, expect_status, contains, verify_tls}``."""
    if not node.is_mapping():
        return HttpConfig(_url(node))
    m = node.mapping(("url", "expect_status", "contains", "verify_tls"), required=("url",))
    return HttpConfig(_url(m["url"]), optional(m, "expect_status", None, lambda n: n.int(100, 599)),
                      optional(m, "contains", None, Node.str), optional(m, "verify_tls", False, Node.bool))


def _url(node: Node) -> str:
    url = node.str().strip()
    if not url.startswith(("http://", "https://")):
        node.fail(f"'{url}' is not an http:// or https:// URL")
    return url


def probe_icmp(device: DeviceConfig, cfg: IcmpConfig, ctx: ProbeContext) -> MethodResult:
    out = icmp_echoes(cfg.host, cfg.count, device.timeout)
    details = dict(out.details)
    details["echo_method"] = details.pop("method", "icmp")  # "tcp" where ICMP is not permitted
    if out.status == "fail":
        return absent("icmp", out.message, **details)
    if out.status == "warn":
        return warn("icmp", out.message, **details)
    return ok("icmp", out.message, **details)


def probe_tcp(device: DeviceConfig, cfg: TcpConfig, ctx: ProbeContext) -> MethodResult:
    out = tcp_connect(cfg.host, cfg.port, device.timeout)
    if out.status == "ok":
        return ok("tcp", out.message, **out.details)
    if out.details.get("result") == "connection_refused":
        # The host answered (RST): it is there, but the service on that port is not.
        return broken("tcp", out.message, **out.details)
    return absent("tcp", out.message, **out.details)


def probe_http(device: DeviceConfig, cfg: HttpConfig, ctx: ProbeContext) -> MethodResult:
    timeout = device.timeout
    details: dict = {"url": cfg.url}
    ctx = None
    if cfg.url.startswith("https://") and not cfg.verify_tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    t0 = time.perf_counter()
    try:
        req = urllib.request.Request(cfg.url, headers={"User-Agent": "pointwatch-agent"})
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:  # noqa: S310 (configured URL)
            code, body = resp.status, resp.read(65536)
    except urllib.error.HTTPError as exc:
        code, body = exc.code, b""
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return absent("http", f"{cfg.url} 无响应：{reason}", **details, error=str(reason))
    details.update(status_code=code, elapsed_s=round(time.perf_counter() - t0, 4))
    good = code == cfg.expect_status if cfg.expect_status else 200 <= code < 400
    if not good:
        return broken("http", f"{cfg.url} 返回 HTTP {code}", **details)
    if cfg.contains and cfg.contains.encode() not in body:
        return broken("http", f"{cfg.url} 的页面中没有“{cfg.contains}”", **details)
    return ok("http", f"{cfg.url} 返回 HTTP {code}", **details)
