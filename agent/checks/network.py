"""net.core.*: the link from the point's terminal to the insurance core network.

One probe function per protocol, each ``(target, settings) -> Outcome`` and free of config parsing, so
tests call them directly against hosts in network namespaces.
"""

from __future__ import annotations

import errno
import socket
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from agent.checks import Outcome, Probe
from agent.confignode import Node, optional

CHECK_IDS = ("net.core.icmp", "net.core.tcp", "net.core.dns", "net.core.https")

# Echoes of one target are spaced this far apart, so a burst measures jitter rather than one queue.
ECHO_SPACING = 0.1
# When ICMP is not permitted, reachability is judged by a TCP handshake to this port: a refusal (RST)
# proves the host is up as well as an accept does.
DEFAULT_FALLBACK_PORT = 443


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


def parse_config(node: Node | None) -> CoreNetworkConfig:
    if node is None:
        return CoreNetworkConfig()
    m = node.mapping(("timeout", "count", "loss_warn", "rtt_warn", "icmp", "tcp", "dns", "https", "ca_bundle"))
    cfg = CoreNetworkConfig(
        timeout=optional(m, "timeout", 1.0, lambda n: n.duration(0.05, 30)),
        count=optional(m, "count", 3, lambda n: n.int(1, 20)),
        loss_warn=optional(m, "loss_warn", 0.2, lambda n: n.float(0, 1)),
        rtt_warn=optional(m, "rtt_warn", 0.2, lambda n: n.duration(0.001, 30)),
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


def probes(config, platform) -> list[Probe]:
    net: CoreNetworkConfig = config.core_network
    out: list[Probe] = []
    if config.enabled("net.core.icmp"):
        echo_span = net.timeout + ECHO_SPACING * (net.count - 1)
        for t in net.icmp:
            out.append(Probe("net.core.icmp", t.name,
                             lambda t=t: icmp_echoes(t.target, net.count, net.timeout, t.fallback_port,
                                                     net.loss_warn, net.rtt_warn),
                             deadline=echo_span + net.timeout + 1))
    if config.enabled("net.core.tcp"):
        for t in net.tcp:
            out.append(Probe("net.core.tcp", t.name, lambda t=t: tcp_connect(t.host, t.port, net.timeout),
                             deadline=net.timeout + 1))
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

    with ThreadPoolExecutor(max_workers=count, thread_name_prefix="echo") as pool:
        return list(pool.map(one, range(count)))


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
