"""usage.* (专用): the terminal is used for insurance business only."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.checks import Probe
from agent.confignode import Node, optional

CHECK_IDS = ("usage.processes", "usage.removable_media", "usage.listening_ports", "usage.accounts")


@dataclass
class UsageConfig:
    forbidden_software: str = "default"
    required_processes: list[str] = field(default_factory=list)
    allowed_ports: list[int] = field(default_factory=list)
    staff_accounts: list[str] = field(default_factory=list)
    allowed_usb_serials: list[str] = field(default_factory=list)


def parse_config(node: Node | None) -> UsageConfig:
    if node is None:
        return UsageConfig()
    m = node.mapping(("forbidden_software", "required_processes", "allowed_ports", "staff_accounts",
                      "allowed_usb_serials"))
    return UsageConfig(
        forbidden_software=optional(m, "forbidden_software", "default", Node.str),
        required_processes=optional(m, "required_processes", [], Node.str_list),
        allowed_ports=[n.port() for n in optional(m, "allowed_ports", [], Node.items)],
        staff_accounts=optional(m, "staff_accounts", [], Node.str_list),
        allowed_usb_serials=optional(m, "allowed_usb_serials", [], Node.str_list),
    )


def probes(config, platform) -> list[Probe]:
    return []
