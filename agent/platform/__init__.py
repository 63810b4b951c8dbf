"""OS facts behind one interface, so checks read the same on Windows and Linux.

Checks receive a :class:`Platform` and never look at the OS themselves; tests feed a platform built from
recorded facts. ``current()`` picks the implementation for the running OS.
"""

from __future__ import annotations

import platform as _stdlib_platform
import socket
import sys

import psutil

from agent.wire import Fingerprint

# Values white-box boards and VMs put where a serial should be: reported, but never trusted as identity.
PLACEHOLDER_SERIALS = {
    "", "0", "none", "default string", "to be filled by o.e.m.", "to be filled by oem", "system serial number",
    "not specified", "not applicable", "chassis serial number", "base board serial number", "123456789",
    "0123456789", "oem", "o.e.m.", "serial", "xxxxxxxx", "00000000", "ffffffff",
}


def is_placeholder(value: str | None) -> bool:
    return value is None or value.strip().lower() in PLACEHOLDER_SERIALS


class Platform:
    """Facts common to every OS (through psutil); subclasses add what needs OS APIs."""

    name = "generic"

    def hostname(self) -> str:
        return socket.gethostname()

    def os_description(self) -> str:
        return f"{_stdlib_platform.system()} {_stdlib_platform.release()}"

    def boot_time(self) -> float:
        return psutil.boot_time()

    def system_disk(self) -> str:
        return "/"

    def machine_id(self) -> str:
        return ""

    def hardware_ids(self) -> dict[str, str]:
        """SMBIOS facts such as system_uuid, bios_serial, board_serial; missing ones are left out."""
        return {}

    def physical_macs(self) -> list[str]:
        macs = set()
        for name, addrs in psutil.net_if_addrs().items():
            for a in addrs:
                if a.family == psutil.AF_LINK and a.address and a.address not in ("00:00:00:00:00:00",):
                    if not self.is_virtual_interface(name):
                        macs.add(a.address.lower().replace("-", ":"))
        return sorted(macs)

    def is_virtual_interface(self, name: str) -> bool:
        return name == "lo" or name.lower().startswith("loopback")

    def fingerprint(self) -> Fingerprint:
        ids = self.hardware_ids()
        serial = next((ids[k] for k in ("system_serial", "board_serial", "bios_serial")
                       if not is_placeholder(ids.get(k))), "")
        return Fingerprint(machine_id=self.machine_id(), serial=serial, macs=self.physical_macs())


def current() -> Platform:
    if sys.platform == "win32":
        from agent.platform.windows import WindowsPlatform

        return WindowsPlatform()
    if sys.platform.startswith("linux"):
        from agent.platform.linux import LinuxPlatform

        return LinuxPlatform()
    return Platform()
