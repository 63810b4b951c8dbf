"""isolation.* (专网): the terminal reaches the insurance private network and nothing else."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.checks import Probe
from agent.confignode import Node, optional

CHECK_IDS = ("isolation.internet", "isolation.interfaces")


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
    return []
