"""net.core.*: the link from the point's terminal to the insurance core network.

One module per protocol (icmp, tcp, dns, https), each with its target, ``parse_target(node)``,
``probe(target, settings) -> Outcome`` and ``deadline(settings)``; this package reads the
``core_network`` section and turns its targets into probes through that one signature. Each protocol's
measuring function (``icmp_echoes``, ``tcp_connect``, ``dns_resolve``, ``https_get``) is free of config
parsing, so tests call them directly against hosts in network namespaces, and the device probes reuse
the ICMP and TCP ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from agent.checks import Probe
from agent.checks.network import dns, https, icmp, tcp
from agent.checks.network.dns import DnsTarget, dns_resolve, resolve
from agent.checks.network.https import HttpsTarget, https_get
from agent.checks.network.icmp import IcmpTarget, icmp_echoes
from agent.checks.network.settings import NetSettings
from agent.checks.network.tcp import TcpTarget, tcp_connect
from agent.confignode import Node, optional
from agent.vocabulary import CHECKS_BY_FAMILY, NET_CORE_DNS, NET_CORE_HTTPS, NET_CORE_ICMP, NET_CORE_TCP

__all__ = ["CHECK_IDS", "CoreNetworkConfig", "DnsTarget", "HttpsTarget", "IcmpTarget", "NetSettings", "TcpTarget",
           "dns_resolve", "https_get", "icmp_echoes", "parse_config", "probes", "resolve", "tcp_connect"]

CHECK_IDS = CHECKS_BY_FAMILY["network"]

# Check id -> its protocol module and the config key listing its targets.
PROTOCOLS = ((NET_CORE_ICMP, icmp, "icmp"), (NET_CORE_TCP, tcp, "tcp"), (NET_CORE_DNS, dns, "dns"),
             (NET_CORE_HTTPS, https, "https"))


@dataclass
class CoreNetworkConfig(NetSettings):
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
        ca_bundle=optional(m, "ca_bundle", None, _existing_file),
    )
    for _check, module, key in PROTOCOLS:
        getattr(cfg, key).extend(module.parse_target(item) for item in optional(m, key, [], Node.items))
    return cfg


def _existing_file(node: Node) -> str:
    path = node.str()
    if not os.path.isfile(path):
        node.fail(f"file '{path}' does not exist")
    return path


def probes(config, platform) -> list[Probe]:
    net: CoreNetworkConfig = config.core_network
    out: list[Probe] = []
    for check, module, key in PROTOCOLS:
        if not config.enabled(check):
            continue
        for t in getattr(net, key):
            out.append(Probe(check, t.name, lambda t=t, module=module: module.probe(t, net),
                             deadline=module.deadline(net)))
    return out
