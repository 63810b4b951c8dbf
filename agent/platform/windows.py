"""Windows facts through the registry, WMI and psutil, never localized command output.

The WMI calls and their parsers live in :mod:`agent.platform.wmi`, the registry fallbacks in
:mod:`agent.platform.winregistry`; this class only wires them together, so the tests can feed recorded
PowerShell output and recorded registry keys through exactly the code that runs on a point's PC.
"""

from __future__ import annotations

import os

import psutil

from agent.platform import winregistry, wmi
from agent.platform.facts import Adapter, Platform, Route, StorageVolume, UsbDevice


class WindowsPlatform(Platform):
    """WMI first; when PowerShell/WMI does not answer, what the registry and psutil can tell (the source
    used is recorded for :meth:`fact_source`); when neither answers, the fact raises ``WmiError`` naming both.
    """

    name = "windows"
    FACT_QUERIES = {
        **Platform.FACT_QUERIES, "machine_id": "HKLM\\" + winregistry.CRYPTOGRAPHY_KEY + "\\MachineGuid",
        "hardware_ids": "Win32_ComputerSystemProduct+Win32_BIOS+Win32_BaseBoard",
        "physical_macs": "Win32_NetworkAdapter", "usb_devices": "Win32_PnPEntity (USB)",
        "adapters": "Win32_NetworkAdapter", "routes": "Win32_IP4RouteTable",
        "removable_volumes": "Win32_DiskDrive volumes", "printers": "Win32_Printer",
        "processes": "psutil+Toolhelp32", "listeners": "psutil.net_connections",
    }

    def __init__(self, run=wmi.run_records, addresses=None, registry=None, links=None, partitions=None):
        # `run(script)` -> rows; tests pass one that returns recorded PowerShell output for each script.
        self._run = run
        self._addresses = addresses  # {connection name: ["10.1.2.3/24", …]}; psutil's when None
        self._registry = registry    # a winregistry.Registry; the PC's when None
        self._links = links          # {connection name: {"up": bool, "mac": str}}; psutil's when None
        self._partitions = partitions  # [(mountpoint, opts)]; psutil.disk_partitions' when None

    @property
    def registry(self) -> winregistry.Registry:
        if self._registry is None:
            self._registry = winregistry.WinRegistry()
        return self._registry

    def _try(self, script: str) -> list[dict]:
        try:
            return self._run(script)
        except wmi.WmiError:
            return []

    def _either(self, fact: str, primary, fallback, source: str):
        """``primary()`` (WMI); on its failure ``fallback()`` (registry/psutil), recorded as the source."""
        try:
            value = primary()
        except (wmi.WmiError, ValueError) as first:
            try:
                value = fallback()
            except (OSError, ValueError, wmi.WmiError) as second:
                raise wmi.WmiError(f"{first}; fallback {source}: {type(second).__name__}: {second}") from second
            self._used(fact, f"{source} (WMI: {first})"[:300])
            return value
        self._used(fact, f"WMI {self.fact_query(fact)}")
        return value

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
        # The registry is the only source (KEY_WOW64_64KEY: a 32-bit agent would read WOW6432Node); a key
        # that cannot be read raises, so identity says which query failed.
        return winregistry.machine_guid(self.registry)

    def hardware_ids(self) -> dict[str, str]:
        # The registry's BIOS key has names but no serial or UUID: identity.fingerprint then says so.
        return self._either("hardware_ids", lambda: wmi.parse_hardware_ids(
            self._run(wmi.PRODUCT_QUERY), self._try(wmi.BIOS_QUERY), self._try(wmi.BOARD_QUERY)),
            lambda: winregistry.bios_facts(self.registry), "registry HKLM\\" + winregistry.BIOS_KEY)

    def physical_macs(self) -> list[str]:
        return self._either("physical_macs", lambda: wmi.physical_macs(self._rows(wmi.ADAPTER_QUERY, "Win32_NetworkAdapter")),
                            lambda: wmi.physical_macs([_with_mac(c["row"], self._link_facts()) for c in
                                                       winregistry.adapter_classes(self.registry).values()]),
                            "registry network class + psutil")

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
        def from_registry():
            rows = winregistry.usb_rows(self.registry)
            if not rows:
                raise OSError("no present USB device (not even a root hub) under Enum\\USB")
            return wmi.parse_usb_entities(rows)

        return self._either("usb_devices", lambda: wmi.parse_usb_entities(self._rows(wmi.USB_QUERY, "Win32_PnPEntity (USB)")),
                            from_registry, "registry HKLM\\" + winregistry.USB_ENUM_KEY)

    def printers(self) -> list[dict]:
        # "[]" from WMI is no printer installed; the registry lists the queues but not their state.
        return self._either("printers", lambda: self._run(wmi.PRINTER_QUERY),
                            lambda: winregistry.printer_rows(self.registry), "registry HKLM\\" + winregistry.PRINTERS_KEY)

    def adapters(self) -> list[Adapter]:
        addresses = self._addresses if self._addresses is not None else _psutil_addresses()
        return self._either("adapters", lambda: wmi.parse_adapters(self._rows(wmi.ADAPTER_QUERY, "Win32_NetworkAdapter"),
                                                                   self._try(wmi.MSFT_ADAPTER_QUERY), addresses),
                            lambda: self._registry_adapters(addresses), "registry network class + psutil")

    def _link_facts(self) -> dict[str, dict]:
        if self._links is not None:
            return self._links
        stats, addrs = psutil.net_if_stats(), psutil.net_if_addrs()
        return {name: {"up": bool(stats.get(name) and stats[name].isup),
                       "mac": next((a.address for a in addrs.get(name, []) if a.family == psutil.AF_LINK), "")}
                for name in set(stats) | set(addrs)}

    def _registry_adapters(self, addresses: dict[str, list[str]]) -> list[Adapter]:
        """psutil's adapters (name, up, addresses) classified by their registry class key; an adapter the
        registry cannot classify is an error, never a guess from its (user-editable) name."""
        classes = winregistry.adapter_classes(self.registry)
        links = self._link_facts()
        rows, msft = [], []
        for name, link in sorted(links.items()):
            if name.lower().startswith("loopback"):
                continue
            cls = classes.get(name)
            if cls is None:
                raise OSError(f"adapter {name!r} has no network class key: its kind cannot be told")
            rows.append({**_with_mac(cls["row"], links), "NetEnabled": link["up"],
                         "NetConnectionStatus": 2 if link["up"] else 7})
            msft.append(cls["msft"])
        if not rows:
            raise OSError("psutil lists no network adapter")
        return wmi.parse_adapters(rows, msft, addresses)

    def routes(self) -> list[Route]:
        # Windows keeps on-link, broadcast and multicast routes for every address: never an empty table.
        return self._either("routes", lambda: wmi.parse_routes(self._rows(wmi.ROUTE_QUERY, "Win32_IP4RouteTable"),
                                                               self._try(wmi.ADAPTER_QUERY)),
                            self._registry_routes, "registry Tcpip\\Parameters\\Interfaces + adapters")

    def _registry_routes(self) -> list[Route]:
        """Default routes from each interface's (DHCP) gateway and the on-link route of each address: all
        isolation.interfaces judges (the rest of the table is not in the registry)."""
        import ipaddress

        gateways = winregistry.default_gateways(self.registry)
        classes = winregistry.adapter_classes(self.registry)
        routes = []
        for a in self.adapters():
            if not a.up:
                continue
            guid = str(classes.get(a.name, {}).get("row", {}).get("GUID", "")).lower()
            for gw in gateways.get(guid, []):
                routes.append(Route("0.0.0.0/0", gw, a.name))
            for addr in a.addresses:
                net = ipaddress.ip_interface(addr).network
                if net.version == 4 and not net.is_loopback:
                    routes.append(Route(str(net), "", a.name))
        return routes

    def removable_volumes(self) -> list[StorageVolume]:
        # The rows cover every disk, the system disk included: none at all is a read that failed.
        return self._either("removable_volumes",
                            lambda: wmi.parse_disk_volumes(self._rows(wmi.DISK_VOLUMES_SCRIPT, "Win32_DiskDrive volumes")),
                            self._registry_volumes, "psutil.disk_partitions + registry MountedDevices")

    def _registry_volumes(self) -> list[StorageVolume]:
        """Mounted drives (psutil) whose letter MountedDevices gives to a USBSTOR device, or that Windows
        calls removable. A fixed drive other than the system drive whose entry is a disk signature could be
        a USB hard disk: that is an error, never "no USB storage"."""
        parts = self._partitions if self._partitions is not None else \
            [(p.mountpoint, p.opts) for p in psutil.disk_partitions(all=False)]
        if not parts:  # the system drive is always mounted
            raise OSError("psutil lists no mounted drive")
        out = []
        for mountpoint, opts in parts:
            letter = mountpoint.rstrip("\\")[:2]
            device = winregistry.mounted_device(self.registry, letter)
            pnp = device.removeprefix("\\??\\").split("#{", 1)[0].replace("#", "\\")
            if pnp.upper().startswith("USBSTOR\\"):
                bus, serial = "usb", wmi.usb_serial_from_pnp(pnp)
            elif "removable" in opts:
                bus, serial = "removable", ""
            elif letter.upper() == self.system_disk().rstrip("\\").upper() or pnp.upper().startswith(("SCSI\\", "IDE\\", "STORAGE\\")):
                continue
            else:
                # A disk signature (or no entry) says nothing of the bus: a USB hard disk would pass unseen.
                raise OSError(f"drive {letter} is not placed by MountedDevices: it may be a USB hard disk")
            out.append(StorageVolume(mountpoint=letter + "\\", device=pnp or letter, bus=bus, serial=serial,
                                     details={"pnp_device_id": pnp, "source": "MountedDevices", "opts": opts}))
        return out


def _with_mac(row: dict, links: dict[str, dict]) -> dict:
    mac = str(links.get(row.get("NetConnectionID"), {}).get("mac", ""))
    return {**row, "MACAddress": mac.replace("-", ":")}


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
