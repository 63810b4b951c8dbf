"""net.core.icmp: echoes to the core network's gateway, with RTT, jitter and loss.

ping3 is imported where the echoes are sent, so loading the agent does not load it.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from agent.checks import Outcome
from agent.checks.network.settings import NetSettings
from agent.checks.network.tcp import tcp_reach
from agent.confignode import Node, optional

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


def parse_target(item: Node) -> IcmpTarget:
    t = item.mapping(("target", "name", "fallback_port"), required=("target",))
    host = t["target"].host()
    return IcmpTarget(host, optional(t, "name", host, Node.str),
                      optional(t, "fallback_port", DEFAULT_FALLBACK_PORT, Node.port))


def deadline(settings: NetSettings) -> float:
    echo_span = settings.timeout + ECHO_SPACING * (settings.count - 1)
    return echo_span + settings.timeout + 1


def probe(target: IcmpTarget, settings: NetSettings) -> Outcome:
    return icmp_echoes(target.target, settings.count, settings.timeout, target.fallback_port,
                       settings.loss_warn, settings.rtt_warn)


def icmp_echoes(target: str, count: int, timeout: float, fallback_port: int = DEFAULT_FALLBACK_PORT,
                loss_warn: float = 0.2, rtt_warn: float = 0.2) -> Outcome:
    """Send ``count`` echoes (spaced, in parallel) and report RTT avg/max, jitter and loss ratio."""
    try:
        rtts = _echo_burst(target, count, timeout)
        method = "icmp"
    except PermissionError as exc:
        # No raw socket and no unprivileged ICMP (ping_group_range / not LocalSystem): say so, then use TCP.
        rtts = [tcp_reach(target, fallback_port, timeout) for _ in range(count)]
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
    # The first echo goes on the probe's own thread, the others on a pool kept for the agent's life, so a
    # cycle does not pay for starting threads. Echoes end within their timeout, so no thread is ever
    # stuck in it.
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
