"""Windows facts through the registry, WMI and psutil, never localized command output.

The WMI calls and their parsers live in :mod:`agent.platform.wmi`; this class only wires them together,
so the tests can feed recorded PowerShell output through exactly the code that runs on a point's PC.
"""

from __future__ import annotations

import os

import psutil

from agent.platform import wmi
from agent.platform.facts import Adapter, Platform, Route, StorageVolume, UsbDevice


class WindowsPlatform(Platform):
    name = "windows"

    def __init__(self, run=wmi.run_records, addresses=None):
        # `run(script)` -> rows; tests pass one that returns recorded PowerShell output for each script.
        self._run = run
        self._addresses = addresses  # {connection name: ["10.1.2.3/24", …]}; psutil's when None

    def _try(self, script: str) -> list[dict]:
        try:
            return self._run(script)
        except wmi.WmiError:
            return []

    def system_disk(self) -> str:
        return os.environ.get("SystemDrive", "C:") + "\\"

    def machine_id(self) -> str:
        import winreg

        # KEY_WOW64_64KEY: a 32-bit agent on 64-bit Windows would otherwise read the WOW6432Node view.
        access = winreg.KEY_READ | winreg.KEY_WOW64_64KEY
        try:
            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"SOFTWARE\Microsoft\Cryptography", 0, access) as key:
                return str(winreg.QueryValueEx(key, "MachineGuid")[0])
        except OSError:
            return ""

    def hardware_ids(self) -> dict[str, str]:
        return wmi.parse_hardware_ids(self._try(wmi.PRODUCT_QUERY), self._try(wmi.BIOS_QUERY),
                                      self._try(wmi.BOARD_QUERY))

    def physical_macs(self) -> list[str]:
        return wmi.physical_macs(self._try(wmi.ADAPTER_QUERY))

    def usb_devices(self) -> list[UsbDevice]:
        return wmi.parse_usb_entities(self._run(wmi.USB_QUERY))

    def adapters(self) -> list[Adapter]:
        addresses = self._addresses if self._addresses is not None else _psutil_addresses()
        return wmi.parse_adapters(self._run(wmi.ADAPTER_QUERY), self._try(wmi.MSFT_ADAPTER_QUERY), addresses)

    def routes(self) -> list[Route]:
        return wmi.parse_routes(self._run(wmi.ROUTE_QUERY), self._try(wmi.ADAPTER_QUERY))

    def removable_volumes(self) -> list[StorageVolume]:
        return wmi.parse_disk_volumes(self._run(wmi.DISK_VOLUMES_SCRIPT))


def _psutil_addresses() -> dict[str, list[str]]:
    import ipaddress
    import socket

    out: dict[str, list[str]] = {}
    for name, addrs in psutil.net_if_addrs().items():
        for a in addrs:
            if a.family in (socket.AF_INET, socket.AF_INET6) and a.address:
                ip = a.address.split("%")[0]
                if a.netmask:
                    bits = bin(int(ipaddress.ip_address(a.netmask))).count("1")
                    out.setdefault(name, []).append(f"{ip}/{bits}")
                else:
                    out.setdefault(name, []).append(ip)
    return out
