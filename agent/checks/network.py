"""net.core.*: the link from the point's terminal to the insurance core network.

One probe function per protocol, each ``(target, settings) -> Outcome`` and free of config parsing, so
tests call them directly against hosts in network namespaces.
"""

from __future__ import annotations

import errno
import http.client
import ipaddress
import os
import socket
import ssl
import statistics
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from agent.checks import Outcome, Probe
from agent.confignode import Node, optional
from agent.vocabulary import CHECKS_BY_FAMILY, NET_CORE_DNS, NET_CORE_HTTPS, NET_CORE_ICMP, NET_CORE_TCP

CHECK_IDS = CHECKS_BY_FAMILY["network"]

# Echoes of one target are spaced this far apart, so a burst measures jitter rather than one queue.
ECHO_SPACING = 0.1
# When ICMP is not permitted, reachability is judged by a TCP handshake to this port: a refusal (RST)
# proves the host is up as well as an accept does.
DEFAULT_FALLBACK_PORT = 443
# A platform certificate this close to expiry is a warning: renewing it on a private network takes weeks.
CERT_WARN_DAYS = 14


@dataclass
class IcmpTarget:
    target: str
    name: str
    fallback_port: int = DEFAULT_FALLBACK_PORT


@dataclass
class TcpTarget:
    host: str
    port: int
    name: str


@dataclass
class DnsTarget:
    name: str
    expect: list[str] = field(default_factory=list)


@dataclass
class HttpsTarget:
    url: str
    name: str
    expect_status: int | None = None


@dataclass
class CoreNetworkConfig:
    timeout: float = 1.0
    count: int = 3
    loss_warn: float = 0.2
    rtt_warn: float = 0.2  # seconds; a village line slower than this on average is degraded
    icmp: list[IcmpTarget] = field(default_factory=list)
    tcp: list[TcpTarget] = field(default_factory=list)
    dns: list[DnsTarget] = field(default_factory=list)
    https: list[HttpsTarget] = field(default_factory=list)
    ca_bundle: str | None = None  # the private network's own CA (PEM) for net.core.https


def parse_config(node: Node | None) -> CoreNetworkConfig:
    if node is None:
        return CoreNetworkConfig()
    m = node.mapping(("timeout", "count", "loss_warn", "rtt_warn", "icmp", "tcp", "dns", "https", "ca_bundle"))
    cfg = CoreNetworkConfig(
        timeout=optional(m, "timeout", 1.0, lambda n: n.duration(0.05, 30)),
        count=optional(m, "count", 3, lambda n: n.int(1, 20)),
        loss_warn=optional(m, "loss_warn", 0.2, lambda n: n.float(0, 1)),
        rtt_warn=optional(m, "rtt_warn", 0.2, lambda n: n.duration(0.001, 30)),
        ca_bundle=optional(m, "ca_bundle", None, _existing_file),
    )
    for item in optional(m, "icmp", [], Node.items):
        t = item.mapping(("target", "name", "fallback_port"), required=("target",))
        host = t["target"].host()
        cfg.icmp.append(IcmpTarget(host, optional(t, "name", host, Node.str),
                                   optional(t, "fallback_port", DEFAULT_FALLBACK_PORT, Node.port)))
    for item in optional(m, "tcp", [], Node.items):
        t = item.mapping(("target", "name"), required=("target",))
        host, port = t["target"].host_port()
        cfg.tcp.append(TcpTarget(host, port, optional(t, "name", f"{host}:{port}", Node.str)))
    for item in optional(m, "dns", [], Node.items):
        t = item.mapping(("name", "expect"), required=("name",))
        expect = [n.host() for n in optional(t, "expect", [], Node.items)]
        cfg.dns.append(DnsTarget(t["name"].host(), expect))
    for item in optional(m, "https", [], Node.items):
        t = item.mapping(("url", "name", "expect_status"), required=("url",))
        url = t["url"].str()
        if not url.startswith(("https://", "http://")):
            t["url"].fail(f"'{url}' is not an http:// or https:// URL")
        cfg.https.append(HttpsTarget(url, optional(t, "name", url, Node.str),
                                     optional(t, "expect_status", None, lambda n: n.int(100, 599))))
    return cfg


def _existing_file(node: Node) -> str:
    path = node.str()
    if not os.path.isfile(path):
        node.fail(f"file '{path}' does not exist")
    return path


def probes(config, platform) -> list[Probe]:
    net: CoreNetworkConfig = config.core_network
    out: list[Probe] = []
    if config.enabled(NET_CORE_ICMP):
        echo_span = net.timeout + ECHO_SPACING * (net.count - 1)
        for t in net.icmp:
            out.append(Probe(NET_CORE_ICMP, t.name,
                             lambda t=t: icmp_echoes(t.target, net.count, net.timeout, t.fallback_port,
                                                     net.loss_warn, net.rtt_warn),
                             deadline=echo_span + net.timeout + 1))
    if config.enabled(NET_CORE_TCP):
        for t in net.tcp:
            out.append(Probe(NET_CORE_TCP, t.name, lambda t=t: tcp_connect(t.host, t.port, net.timeout),
                             deadline=net.timeout + 1))
    if config.enabled(NET_CORE_DNS):
        for t in net.dns:
            out.append(Probe(NET_CORE_DNS, t.name, lambda t=t: dns_resolve(t.name, t.expect, net.timeout),
                             deadline=net.timeout + 1))
    if config.enabled(NET_CORE_HTTPS):
        for t in net.https:
            # connect, TLS handshake and the response each get one timeout.
            out.append(Probe(NET_CORE_HTTPS, t.name,
                             lambda t=t: https_get(t.url, net.timeout, net.ca_bundle, t.expect_status),
                             deadline=3 * net.timeout + 1))
    return out


# -- ICMP ------------------------------------------------------------------------------------------


def icmp_echoes(target: str, count: int, timeout: float, fallback_port: int = DEFAULT_FALLBACK_PORT,
                loss_warn: float = 0.2, rtt_warn: float = 0.2) -> Outcome:
    """Send ``count`` echoes (spaced, in parallel) and report RTT avg/max, jitter and loss ratio."""
    try:
        rtts = _echo_burst(target, count, timeout)
        method = "icmp"
    except PermissionError as exc:
        # No raw socket and no unprivileged ICMP (ping_group_range / not LocalSystem): say so, then use TCP.
        rtts = [_tcp_reach(target, fallback_port, timeout) for _ in range(count)]
        method, fallback_reason = "tcp", str(exc)
    except socket.gaierror as exc:
        return Outcome("fail", f"无法解析地址 {target}：{exc.strerror}", details={"method": "icmp", "error": "dns"})
    details: dict = {"method": method, "sent": count, "target": target}
    if method == "tcp":
        details.update(port=fallback_port, fallback_reason=fallback_reason)
    return _echo_outcome(target, rtts, details, loss_warn, rtt_warn)


def _echo_burst(target: str, count: int, timeout: float) -> list[float | None]:
    import ping3  # only the network job needs it

    def one(seq: int) -> float | None:
        time.sleep(seq * ECHO_SPACING)
        rtt = ping3.ping(target, timeout=timeout, unit="s", seq=seq)
        return rtt if isinstance(rtt, float) else None  # None = timeout, False = unreachable/error

    if count == 1:  # nothing to overlap: no thread
        return [one(0)]
    # The first echo goes on the probe's own thread, the others on a pool kept for the agent's life
    # (threads made afresh each cycle were a visible share of the agent's CPU). Echoes end within their
    # timeout, so no thread is ever stuck in it.
    rest = [_echo_pool().submit(one, seq) for seq in range(1, count)]
    first = one(0)
    return [first, *(f.result() for f in rest)]


_ECHO_POOL: list = []
_ECHO_LOCK = threading.Lock()


def _echo_pool() -> ThreadPoolExecutor:
    with _ECHO_LOCK:
        if not _ECHO_POOL:
            # Room for every echo of 32 targets at count 3 in flight at once; idle threads are reused.
            _ECHO_POOL.append(ThreadPoolExecutor(max_workers=64, thread_name_prefix="echo"))
        return _ECHO_POOL[0]


def _echo_outcome(target: str, rtts: list[float | None], details: dict, loss_warn: float,
                  rtt_warn: float) -> Outcome:
    answered = [r for r in rtts if r is not None]
    loss = 1 - len(answered) / len(rtts)
    details["loss_ratio"] = round(loss, 3)
    how = "（ICMP 不可用，改用 TCP 探测）" if details["method"] == "tcp" else ""
    if not answered:
        return Outcome("fail", f"{target} 无响应，丢包率 100%{how}", value=None, unit="seconds", details=details)
    avg, worst = statistics.fmean(answered), max(answered)
    jitter = statistics.fmean(abs(a - b) for a, b in zip(answered, answered[1:], strict=False)) if len(answered) > 1 else 0.0
    details.update(rtt_avg_s=round(avg, 6), rtt_max_s=round(worst, 6), rtt_min_s=round(min(answered), 6),
                   jitter_s=round(jitter, 6))
    text = f"{target} 平均时延 {avg * 1000:.1f} ms，最大 {worst * 1000:.1f} ms，抖动 {jitter * 1000:.1f} ms，丢包率 {loss:.0%}{how}"
    status = "warn" if loss >= loss_warn or avg >= rtt_warn else "ok"
    prefix = "核心网络质量下降：" if status == "warn" else ""
    return Outcome(status, prefix + text, value=round(avg, 6), unit="seconds", details=details)


# -- TCP -------------------------------------------------------------------------------------------


def _tcp_reach(host: str, port: int, timeout: float) -> float | None:
    """Seconds until the host answered a SYN (accept or refusal), or None when it did not."""
    t0 = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except ConnectionRefusedError:
        pass
    except OSError:
        return None
    return time.perf_counter() - t0


def tcp_connect(host: str, port: int, timeout: float) -> Outcome:
    t0 = time.perf_counter()
    details = {"host": host, "port": port}
    try:
        with socket.create_connection((host, port), timeout=timeout):
            elapsed = time.perf_counter() - t0
    except TimeoutError:
        return Outcome("fail", f"连接 {host}:{port} 超时（{timeout:g} 秒）", unit="seconds",
                       details={**details, "result": "timeout"})
    except ConnectionRefusedError:
        return Outcome("fail", f"{host}:{port} 拒绝连接（端口未开放）", unit="seconds",
                       details={**details, "result": "connection_refused"})
    except socket.gaierror as exc:
        return Outcome("fail", f"无法解析地址 {host}：{exc.strerror}", unit="seconds",
                       details={**details, "result": "resolve_failed"})
    except OSError as exc:
        reason = errno.errorcode.get(exc.errno or 0, "os_error").lower()
        return Outcome("fail", f"无法连接 {host}:{port}：{exc.strerror or exc}", unit="seconds",
                       details={**details, "result": reason})
    details["connect_s"] = round(elapsed, 6)
    return Outcome("ok", f"{host}:{port} 连接成功，用时 {elapsed * 1000:.1f} ms", value=round(elapsed, 6),
                   unit="seconds", details=details)


# -- DNS -------------------------------------------------------------------------------------------


def resolve(name: str, timeout: float) -> list[str]:
    """Addresses of ``name`` through the system resolver, giving up after ``timeout`` seconds.

    getaddrinfo cannot be cancelled and the resolver's own retries can take 10 s or more, so it runs in a
    daemon thread that is simply abandoned on timeout (and never holds up the agent's exit).
    Raises TimeoutError, or socket.gaierror when the name does not resolve.
    """
    box: dict = {}

    def work() -> None:
        try:
            infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
            box["addrs"] = sorted({info[4][0] for info in infos}, key=_addr_key)
        except Exception as exc:
            box["error"] = exc

    thread = threading.Thread(target=work, name=f"resolve-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"resolving {name} took longer than {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["addrs"]


def _addr_key(addr: str):
    ip = ipaddress.ip_address(addr.split("%")[0])
    return (ip.version, ip)


def dns_resolve(name: str, expect: list[str], timeout: float) -> Outcome:
    t0 = time.perf_counter()
    details: dict = {"name": name, "expect": expect}
    try:
        addrs = resolve(name, timeout)
    except TimeoutError:
        return Outcome("fail", f"解析 {name} 超时（{timeout:g} 秒）", unit="seconds", details={**details, "result": "timeout"})
    except socket.gaierror as exc:
        return Outcome("fail", f"无法解析 {name}：{exc.strerror}", unit="seconds",
                       details={**details, "result": "resolve_failed", "error": exc.strerror})
    elapsed = time.perf_counter() - t0
    details.update(addresses=addrs, resolve_s=round(elapsed, 6))
    if expect:
        wanted = {str(ipaddress.ip_address(e)) if _is_ip(e) else e for e in expect}
        matched, extra = sorted(wanted & set(addrs)), sorted(set(addrs) - wanted)
        details.update(matched=matched, unexpected=extra)
        if not matched:
            return Outcome("fail", f"{name} 解析为 {', '.join(addrs)}，不是预期的 {', '.join(expect)}（可能被劫持或配置错误）",
                           value=round(elapsed, 6), unit="seconds", details={**details, "result": "unexpected_address"})
        if extra:
            return Outcome("warn", f"{name} 解析结果含预期外的地址 {', '.join(extra)}", value=round(elapsed, 6),
                           unit="seconds", details={**details, "result": "extra_address"})
    details["result"] = "ok"
    return Outcome("ok", f"{name} 解析为 {', '.join(addrs)}，用时 {elapsed * 1000:.1f} ms", value=round(elapsed, 6),
                   unit="seconds", details=details)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


# -- HTTPS -----------------------------------------------------------------------------------------


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
