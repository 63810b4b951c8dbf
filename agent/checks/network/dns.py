"""net.core.dns: the platform's names resolve, to the addresses expected when they are given."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from dataclasses import dataclass, field

from agent.checks import Outcome
from agent.checks.network.settings import NetSettings
from agent.confignode import Node, optional


@dataclass
class DnsTarget:
    name: str
    expect: list[str] = field(default_factory=list)


def parse_target(item: Node) -> DnsTarget:
    t = item.mapping(("name", "expect"), required=("name",))
    return DnsTarget(t["name"].host(), [n.host() for n in optional(t, "expect", [], Node.items)])


def deadline(settings: NetSettings) -> float:
    return settings.timeout + 1


def probe(target: DnsTarget, settings: NetSettings) -> Outcome:
    return dns_resolve(target.name, target.expect, settings.timeout)


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
