"""isolation.* (专网): the terminal reaches the insurance private network and nothing else.

``isolation.internet`` tries public canaries (TCP, ICMP, DNS) and fails on any that answers;
``isolation.interfaces`` looks at the adapters and routes the platform reports: an up wireless, cellular
or tunnel adapter fails unless ``allowed_interfaces`` names it (a VPDN modem or VPN adapter may be the
专网 link), and with ``allowed_interfaces`` given any other up adapter fails too. Both are plain functions
of their inputs so tests drive them with namespaces (internet) and recorded facts (interfaces).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
import threading
import time
from dataclasses import dataclass, field

from agent.checks import Outcome, Probe
from agent.checks.network.dns import resolve
from agent.confignode import Node, optional
from agent.platform import FORBIDDEN_KINDS, Adapter, Route
from agent.vocabulary import CHECKS_BY_FAMILY, ISOLATION_INTERFACES, ISOLATION_INTERNET

KIND_LABEL = {"wireless": "无线网卡", "cellular": "移动网络/手机共享网卡", "tunnel": "隧道/VPN 网卡",
              "ethernet": "有线网卡", "virtual": "虚拟网卡", "other": "网卡"}
METHOD_LABEL = {"tcp": "TCP 连接成功", "icmp": "ICMP 有回应", "dns": "域名可解析"}

CHECK_IDS = CHECKS_BY_FAMILY["isolation"]


@dataclass
class Canary:
    target: str
    method: str  # tcp, icmp or dns
    port: int | None = None


@dataclass
class IsolationConfig:
    internet_canaries: list[Canary] = field(default_factory=list)
    allowed_interfaces: list[str] = field(default_factory=list)
    allowed_subnets: list = field(default_factory=list)
    timeout: float = 1.0


def parse_config(node: Node | None) -> IsolationConfig:
    if node is None:
        return IsolationConfig()
    m = node.mapping(("internet_canaries", "allowed_interfaces", "allowed_subnets", "timeout"))
    cfg = IsolationConfig(
        allowed_interfaces=optional(m, "allowed_interfaces", [], Node.str_list),
        allowed_subnets=[n.cidr() for n in optional(m, "allowed_subnets", [], Node.items)],
        timeout=optional(m, "timeout", 1.0, lambda n: n.duration(0.05, 10)),
    )
    for item in optional(m, "internet_canaries", [], Node.items):
        c = item.mapping(("target", "name", "method"))
        if "target" in c:
            method = optional(c, "method", None, lambda n: n.choice(("tcp", "icmp")))
            if method == "icmp" or (method is None and ":" not in c["target"].str()):
                cfg.internet_canaries.append(Canary(c["target"].host(), "icmp"))
            else:
                host, port = c["target"].host_port()
                cfg.internet_canaries.append(Canary(host, "tcp", port))
        elif "name" in c:
            cfg.internet_canaries.append(Canary(c["name"].host(), "dns"))
        else:
            item.fail("a canary needs 'target' (address or address:port) or 'name' (a host name to resolve)")
    return cfg


def probes(config, platform) -> list[Probe]:
    iso: IsolationConfig = config.isolation or IsolationConfig()
    out = []
    if config.enabled(ISOLATION_INTERNET):
        out.append(Probe(ISOLATION_INTERNET, "互联网", lambda: internet_isolation(iso.internet_canaries, iso.timeout),
                         deadline=iso.timeout + 1))
    if config.enabled(ISOLATION_INTERFACES):
        out.append(Probe(ISOLATION_INTERFACES, "本机网卡",
                         lambda: interface_isolation(platform.adapters(), platform.routes(),
                                                     iso.allowed_interfaces, iso.allowed_subnets),
                         deadline=30))
    return out


# -- isolation.internet ----------------------------------------------------------------------------


def canary_label(c: Canary) -> str:
    if c.method == "tcp":
        return f"[{c.target}]:{c.port}" if ":" in c.target else f"{c.target}:{c.port}"
    return c.target


def probe_canary(c: Canary, timeout: float) -> dict:
    """One canary: {"reachable": True/False/None (could not test), "result": …}."""
    t0 = time.perf_counter()
    row: dict = {"canary": canary_label(c), "method": c.method}
    try:
        if c.method == "tcp":
            with socket.create_connection((c.target, c.port), timeout=timeout):
                row.update(reachable=True, result="connected")
        elif c.method == "icmp":
            import ping3

            rtt = ping3.ping(c.target, timeout=timeout, unit="s")
            row.update(reachable=isinstance(rtt, float), result="echo_reply" if isinstance(rtt, float) else "no_reply")
        else:
            addrs = resolve(c.target, timeout)
            row.update(reachable=True, result="resolved", addresses=addrs)
    except PermissionError as exc:  # no raw/unprivileged ICMP socket: this canary cannot be tested
        row.update(reachable=None, result="not_permitted", error=str(exc))
    except TimeoutError:
        row.update(reachable=False, result="timeout")
    except ConnectionRefusedError:
        # A reset can come from a firewall that rejects rather than drops: not proof of a way out.
        row.update(reachable=False, result="refused")
    except socket.gaierror as exc:
        row.update(reachable=False, result="resolve_failed", error=exc.strerror)
    except OSError as exc:
        row.update(reachable=False, result="unreachable", error=exc.strerror or str(exc))
    row["elapsed_s"] = round(time.perf_counter() - t0, 3)
    return row


def internet_isolation(canaries: list[Canary], timeout: float) -> Outcome:
    """All canaries at once; whatever has not answered when ``timeout`` is up counts as not reachable."""
    if not canaries:
        return Outcome("error", "未配置互联网探测目标（isolation.internet_canaries），无法验证专网隔离",
                       details={"canaries": []})
    rows: list[dict | None] = [None] * len(canaries)

    def work(i: int, c: Canary) -> None:
        rows[i] = probe_canary(c, timeout)

    # Daemon threads: a resolver stuck past the deadline is abandoned, never waited for.
    threads = [threading.Thread(target=work, args=(i, c), daemon=True, name="canary") for i, c in enumerate(canaries)]
    deadline = time.monotonic() + timeout
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    results = [r if r is not None else {"canary": canary_label(c), "method": c.method, "reachable": False,
                                        "result": "timeout", "elapsed_s": timeout}
               for r, c in zip(rows, canaries, strict=True)]
    reachable = [r for r in results if r["reachable"] is True]
    untested = [r for r in results if r["reachable"] is None]
    details = {"canaries": results, "timeout_s": timeout, "reachable": [r["canary"] for r in reachable]}
    if reachable:
        named = "、".join(f"{r['canary']}（{METHOD_LABEL[r['method']]}）" for r in reachable)
        return Outcome("fail", f"违反专网专用：本机可访问互联网：{named}", value=len(reachable), unit="count",
                       details=details)
    if len(untested) == len(results):
        return Outcome("error", "无法检测互联网连通性：所有探测方式均不可用（ICMP 需要管理员权限）", details=details)
    note = f"（{len(untested)} 项无法检测）" if untested else ""
    return Outcome("ok", f"{len(results) - len(untested)} 个互联网探测目标均不可达，专网隔离正常{note}", value=0,
                   unit="count", details=details)


# -- isolation.interfaces --------------------------------------------------------------------------


def _name_allowed(name: str, allowed: list[str]) -> bool:
    return any(fnmatch.fnmatch(name.lower(), pattern.lower()) for pattern in allowed)


def _routable(addr: str) -> bool:
    ip = ipaddress.ip_interface(addr).ip
    return not (ip.is_loopback or ip.is_link_local)


def interface_isolation(adapters: list[Adapter], routes: list[Route], allowed_interfaces: list[str],
                        allowed_subnets: list) -> Outcome:
    failures: list[str] = []
    warnings: list[str] = []
    facts = {"adapters": [{"name": a.name, "kind": a.kind, "up": a.up} for a in adapters], "routes": len(routes)}
    if not any(a.kind != "loopback" for a in adapters):
        # The agent reaches its collector through some adapter: a list without one is a read that failed
        # (WMI answering nothing), never "only registered adapters in use".
        return Outcome("error", "无法核对网卡：系统未返回任何网卡信息", details={**facts, "reason": "no_adapters"})
    up = [a for a in adapters if a.up and a.kind != "loopback"]
    if not routes and any(_routable(addr) for a in up for addr in a.addresses):
        # An up adapter with an address always has its on-link route: an empty table was not read.
        return Outcome("error", "无法核对路由：系统未返回路由表", details={**facts, "reason": "no_routes"})
    registered = []
    for a in up:
        # A registered adapter is the point's 专网 link whatever its kind: a VPDN (4G/5G APN) modem or a
        # VPN adapter is how some points reach the insurance network.
        if allowed_interfaces and _name_allowed(a.name, allowed_interfaces):
            registered.append(a.name)
        elif a.kind in FORBIDDEN_KINDS:
            failures.append(f"{KIND_LABEL[a.kind]} {a.name} 已启用（{a.description}）")
        elif allowed_interfaces:
            failures.append(f"未登记的{KIND_LABEL.get(a.kind, '网卡')} {a.name} 已启用")
    defaults: dict[int, set[tuple[str, str]]] = {4: set(), 6: set()}
    for r in routes:
        if r.is_default:
            defaults[6 if ":" in r.destination else 4].add((r.gateway, r.interface))
    for version, ways in defaults.items():
        if len(ways) > 1:
            listed = "、".join(f"{gw or '直连'} 经 {iface}" for gw, iface in sorted(ways))
            failures.append(f"存在 {len(ways)} 条 IPv{version} 默认路由（{listed}），可能绕过专网")
    outside = []
    if allowed_subnets:
        for a in up:
            for addr in a.addresses:
                ip = ipaddress.ip_interface(addr).ip
                if ip.is_loopback or (ip.version == 6 and ip.is_link_local):
                    continue
                if not any(ip.version == net.version and ip in net for net in allowed_subnets):
                    outside.append(f"{a.name} {ip}")
        if outside:
            warnings.append(f"地址不在允许的网段内：{'、'.join(outside)}")
    details = {
        "adapters": [{"name": a.name, "kind": a.kind, "up": a.up, "addresses": list(a.addresses),
                      "description": a.description} for a in adapters],
        "default_routes": [{"gateway": r.gateway, "interface": r.interface, "metric": r.metric, "destination": r.destination}
                           for r in routes if r.is_default],
        "allowed_interfaces": allowed_interfaces, "allowed_subnets": [str(n) for n in allowed_subnets],
        "outside_addresses": outside, "registered_up": registered,
    }
    if failures:
        return Outcome("fail", "违反专网专用：" + "；".join(failures + warnings), value=len(failures), unit="count",
                       details=details)
    if warnings:
        return Outcome("warn", "；".join(warnings), value=0, unit="count", details=details)
    names = "、".join(a.name for a in up) or "无"
    return Outcome("ok", f"仅已登记网卡在用（{names}），默认路由唯一", value=0, unit="count", details=details)
