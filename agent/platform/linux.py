"""Linux facts (Debian, Ubuntu and the domestic Kylin / UOS): /etc, sysfs and /proc, never command text."""

from __future__ import annotations

import os
from pathlib import Path

from agent.platform import Platform

DMI = Path("/sys/class/dmi/id")


class LinuxPlatform(Platform):
    name = "linux"

    def __init__(self, root: str = "/"):
        # `root` lets tests point the platform at a recorded copy of /etc and /sys.
        self.root = Path(root)

    def _read(self, rel: str) -> str:
        try:
            return (self.root / rel.lstrip("/")).read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            return ""

    def os_description(self) -> str:
        fields = {}
        for line in self._read("/etc/os-release").splitlines():
            key, _, value = line.partition("=")
            fields[key] = value.strip().strip('"')
        return fields.get("PRETTY_NAME") or f"Linux {os.uname().release}"

    def machine_id(self) -> str:
        return self._read("/etc/machine-id") or self._read("/var/lib/dbus/machine-id")

    def hardware_ids(self) -> dict[str, str]:
        # product_serial / product_uuid are root-only; the agent's service user gets them via its unit's
        # ReadOnlyPaths + CAP_DAC_READ_SEARCH, and a plain user just reports fewer factors.
        names = {"system_uuid": "product_uuid", "system_serial": "product_serial",
                 "board_serial": "board_serial", "bios_vendor": "bios_vendor", "product_name": "product_name"}
        ids = {}
        for key, leaf in names.items():
            value = self._read(f"/sys/class/dmi/id/{leaf}")
            if value:
                ids[key] = value
        return ids

    def is_virtual_interface(self, name: str) -> bool:
        if name == "lo":
            return True
        # Physical NICs have a `device` link in sysfs; bridges, veths, tunnels and bonds do not.
        return not (self.root / "sys/class/net" / name / "device").exists()
