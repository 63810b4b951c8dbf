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

    def process_names(self) -> dict[int, str]:
        """The Toolhelp32 snapshot (kernel32, what Task Manager's list rests on): names without opening
        any process, where psutil's per-process query fails (WinError 87 under Wine, protected processes)."""
        try:
            return _toolhelp_process_names()
        except OSError:
            return {}

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

    def _rows(self, script: str, what: str) -> list[dict]:
        """Rows of a query that a real PC always answers with something: none is a failed read.

        PowerShell can exit 0 with empty output (seen with the agent on Windows CPython), and an empty
        list would read as "no adapter", "no route", "no USB device": a finding nobody saw.
        """
        rows = self._run(script)
        if not rows:
            raise wmi.WmiError(f"{what}: WMI returned no rows")
        return rows

    def usb_devices(self) -> list[UsbDevice]:
        # The USB root hubs (USB\ROOT_HUB…) are always listed, so no row at all means no answer.
        return wmi.parse_usb_entities(self._rows(wmi.USB_QUERY, "Win32_PnPEntity (USB)"))

    def adapters(self) -> list[Adapter]:
        addresses = self._addresses if self._addresses is not None else _psutil_addresses()
        return wmi.parse_adapters(self._rows(wmi.ADAPTER_QUERY, "Win32_NetworkAdapter"),
                                  self._try(wmi.MSFT_ADAPTER_QUERY), addresses)

    def routes(self) -> list[Route]:
        # Windows keeps on-link, broadcast and multicast routes for every address: never an empty table.
        return wmi.parse_routes(self._rows(wmi.ROUTE_QUERY, "Win32_IP4RouteTable"), self._try(wmi.ADAPTER_QUERY))

    def removable_volumes(self) -> list[StorageVolume]:
        # The rows cover every disk, the system disk included: none at all is a read that failed.
        return wmi.parse_disk_volumes(self._rows(wmi.DISK_VOLUMES_SCRIPT, "Win32_DiskDrive volumes"))


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


def _toolhelp_process_names() -> dict[int, str]:
    import ctypes
    from ctypes import wintypes

    class PROCESSENTRY32W(ctypes.Structure):  # noqa: N801 - the Windows SDK's name
        _fields_ = [("dwSize", wintypes.DWORD), ("cntUsage", wintypes.DWORD),
                    ("th32ProcessID", wintypes.DWORD), ("th32DefaultHeapID", ctypes.c_size_t),
                    ("th32ModuleID", wintypes.DWORD), ("cntThreads", wintypes.DWORD),
                    ("th32ParentProcessID", wintypes.DWORD), ("pcPriClassBase", ctypes.c_long),
                    ("dwFlags", wintypes.DWORD), ("szExeFile", wintypes.WCHAR * 260)]

    k32 = ctypes.WinDLL("kernel32", use_last_error=True)
    k32.CreateToolhelp32Snapshot.restype = wintypes.HANDLE
    k32.CreateToolhelp32Snapshot.argtypes = [wintypes.DWORD, wintypes.DWORD]
    k32.Process32FirstW.argtypes = k32.Process32NextW.argtypes = [wintypes.HANDLE,
                                                                  ctypes.POINTER(PROCESSENTRY32W)]
    k32.CloseHandle.argtypes = [wintypes.HANDLE]
    snap = k32.CreateToolhelp32Snapshot(0x2, 0)  # TH32CS_SNAPPROCESS
    if snap in (None, wintypes.HANDLE(-1).value):
        raise ctypes.WinError(ctypes.get_last_error())
    names: dict[int, str] = {}
    try:
        entry = PROCESSENTRY32W()
        entry.dwSize = ctypes.sizeof(PROCESSENTRY32W)
        ok = k32.Process32FirstW(snap, ctypes.byref(entry))
        while ok:
            names[int(entry.th32ProcessID)] = entry.szExeFile
            ok = k32.Process32NextW(snap, ctypes.byref(entry))
    finally:
        k32.CloseHandle(snap)
    return names
