"""isolation.* (专网): the terminal reaches the insurance private network and nothing else.

``isolation.internet`` tries public canaries (see :mod:`agent.checks.canaries`) and fails on any whose real
service answers; a canary answered by something else (a transparent proxy) is a warning of its own;
``isolation.interfaces`` looks at the adapters and routes the platform reports: an up wireless, cellular
or tunnel adapter fails unless ``allowed_interfaces`` names it (a VPDN modem or VPN adapter may be the
专网 link), and with ``allowed_interfaces`` given any other up adapter fails too. Both are plain functions
of their inputs so tests drive them with namespaces (internet) and recorded facts (interfaces).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import threading
import time
from dataclasses import dataclass, field

from agent.checks import Outcome, Probe, read_fact, unavailable
from agent.checks.canaries import MIDDLEBOX, RESULT_LABEL, Canary, attempts, parse_canary, run_attempt
from agent.checks.canaries import label as canary_label
from agent.confignode import Node, optional
from agent.platform import FORBIDDEN_KINDS, Adapter, Route
from agent.vocabulary import CHECKS_BY_FAMILY, ISOLATION_INTERFACES, ISOLATION_INTERNET

KIND_LABEL = {"wireless": "无线网卡", "cellular": "移动网络/手机共享网卡", "tunnel": "隧道/VPN 网卡",
              "ethernet": "有线网卡", "virtual": "虚拟网卡", "other": "网卡"}

CHECK_IDS = CHECKS_BY_FAMILY["isolation"]


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
    cfg.internet_canaries = [parse_canary(item) for item in optional(m, "internet_canaries", [], Node.items)]
    return cfg


def probes(config, platform) -> list[Probe]:
    iso: IsolationConfig = config.isolation or IsolationConfig()
    out = []
    if config.enabled(ISOLATION_INTERNET):
        out.append(Probe(ISOLATION_INTERNET, "互联网", lambda: internet_isolation(iso.internet_canaries, iso.timeout),
                         deadline=iso.timeout + 1))
    if config.enabled(ISOLATION_INTERFACES):
        out.append(Probe(ISOLATION_INTERFACES, "本机网卡", lambda: read_interfaces(platform, iso), deadline=30))
    return out


def read_interfaces(platform, iso: IsolationConfig) -> Outcome:
    """The platform's adapters and routes, judged; an empty answer where a PC always has one is an error."""
    adapters = read_fact(platform, "adapters")
    if not any(a.kind != "loopback" for a in adapters):
        # The agent reaches its collector through some adapter: none is a read that failed.
        raise unavailable("adapters", platform.fact_query("adapters"), "returned no network adapter")
    routes = read_fact(platform, "routes")
    if not routes and any(_routable(addr) for a in adapters if a.up and a.kind != "loopback" for addr in a.addresses):
        raise unavailable("routes", platform.fact_query("routes"), "returned no route for an adapter with an address")
    return interface_isolation(adapters, routes, iso.allowed_interfaces, iso.allowed_subnets)


# -- isolation.internet ----------------------------------------------------------------------------


def probe_canary(c: Canary, timeout: float) -> dict:
    """One canary on its own (every attempt at once): {"reachable": True/False/None, "result": …}."""
    return internet_rows([c], timeout)[0]


def internet_rows(canaries: list[Canary], timeout: float) -> list[dict]:
    """Every attempt of every canary at once; what has not finished when ``timeout`` is up is judged on
    what it saw so far (a handshake then silence is a middlebox, no handshake is not reachable)."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    jobs = [(i, transport, fn, {}) for i, c in enumerate(canaries) for transport, fn in attempts(c)]
    out: list[dict | None] = [None] * len(jobs)

    def work(j: int) -> None:
        i, _transport, fn, state = jobs[j]
        out[j] = run_attempt(fn, canaries[i], deadline, state)

    # Daemon threads: a resolver stuck past the deadline is abandoned, never waited for.
    threads = [threading.Thread(target=work, args=(j,), daemon=True, name="canary") for j in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline + 0.2 - time.monotonic()))  # the attempts stop at deadline themselves
    by_canary: dict[int, dict[str, dict]] = {}
    for j, (i, transport, _fn, state) in enumerate(jobs):
        row = out[j]
        if row is None:
            row = ({"reachable": False, "result": "no_answer", "answered_by": MIDDLEBOX} if state.get("connected")
                   else {"reachable": False, "result": "timeout"})
        by_canary.setdefault(i, {})[transport] = row
    elapsed = round(time.monotonic() - t0, 3)
    return [_fold(c, by_canary[i], elapsed) for i, c in enumerate(canaries)]


def _fold(c: Canary, tries: dict[str, dict], elapsed: float) -> dict:
    """One row per canary: reached if any attempt reached the service, else a middlebox if one answered."""
    rows = list(tries.values())
    pick = (next((r for r in rows if r["reachable"] is True), None)
            or next((r for r in rows if r.get("answered_by") == MIDDLEBOX), None)
            or next((r for r in rows if r["reachable"] is False), None) or rows[0])
    row = {"canary": canary_label(c), "method": c.method, **pick, "elapsed_s": elapsed}
    if len(tries) > 1:
        row["attempts"] = {t: {k: v for k, v in r.items()} for t, r in tries.items()}
    return row


def _seen(r: dict) -> str:
    return f"{r['canary']}（{RESULT_LABEL.get(r['result'], r['result'])}" + \
        (f"：{r['mismatch']}" if r.get("mismatch") else "") + "）"


def internet_isolation(canaries: list[Canary], timeout: float) -> Outcome:
    """All canaries at once. Reachable = the real service answered; an answer that is not the service's
    (or a handshake with none) is a device on the link answering for it: a warning, not a 专网 violation."""
    if not canaries:
        return Outcome("error", "未配置互联网探测目标（isolation.internet_canaries），无法验证专网隔离",
                       details={"canaries": []})
    results = internet_rows(canaries, timeout)
    reachable = [r for r in results if r["reachable"] is True]
    middlebox = [r for r in results if r["reachable"] is not True and r.get("answered_by") == MIDDLEBOX]
    untested = [r for r in results if r["reachable"] is None]
    details = {"canaries": results, "timeout_s": timeout, "reachable": [r["canary"] for r in reachable],
               "answered_by_middlebox": [r["canary"] for r in middlebox]}
    if reachable:
        named = "、".join(_seen(r) for r in reachable)
        return Outcome("fail", f"违反专网专用：本机可访问互联网：{named}", value=len(reachable), unit="count",
                       details=details)
    if middlebox:
        named = "、".join(_seen(r) for r in middlebox)
        return Outcome("warn", f"链路上有设备代答：{named}；未见真实互联网服务应答", value=0, unit="count",
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
    if not allowed_interfaces:  # say what was seen: no list to hold the adapters against
        return Outcome("ok", f"未启用无线、移动网络或隧道网卡（在用：{names}），默认路由唯一；"
                       "未登记专网网卡（isolation.allowed_interfaces），未核对网卡名单", value=0, unit="count",
                       details=details)
    return Outcome("ok", f"仅已登记网卡在用（{names}），默认路由唯一", value=0, unit="count", details=details)
