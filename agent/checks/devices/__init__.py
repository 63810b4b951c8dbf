"""device.<kind>: the devices the standards require at a point, each present and working."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.checks import Probe
from agent.confignode import Node, optional

KINDS = ("kiosk", "queue", "printer", "scanner", "display", "copier", "camera", "phone", "computer", "other")
CHECK_IDS = tuple(f"device.{k}" for k in KINDS)
PROBE_METHODS = ("icmp", "tcp", "http", "snmp", "usb", "cups", "escl", "local_printer")


@dataclass
class DeviceConfig:
    kind: str
    name: str
    required: bool = True
    methods: dict[str, Any] = field(default_factory=dict)


def parse_config(node: Node | None) -> list[DeviceConfig]:
    devices = []
    for item in (node.items() if node is not None else []):
        m = item.mapping(("kind", "name", "required", *PROBE_METHODS), required=("kind",))
        kind = m["kind"].choice(KINDS)
        methods = {k: m[k].value for k in PROBE_METHODS if k in m}
        if not methods:
            item.fail(f"device has no probe method (give one of: {', '.join(PROBE_METHODS)})")
        devices.append(DeviceConfig(kind, optional(m, "name", kind, Node.str),
                                    optional(m, "required", True, Node.bool), methods))
    return devices


def probes(config, platform) -> list[Probe]:
    return []
