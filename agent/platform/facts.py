"""The facts an OS gives the checks (adapters, routes, processes, USB devices, …) and the interface that
gives them, ``Platform``; agent/platform/linux.py and windows.py implement it."""

from __future__ import annotations

import platform as _stdlib_platform
import socket
from dataclasses import dataclass, field

import psutil

try:
    import pwd
except ImportError:  # Windows: psutil's username() asks the OS for the account name
    pwd = None

from agent.wire import Fingerprint

# Values white-box boards and VMs put where a serial should be: reported, but never trusted as identity.
PLACEHOLDER_SERIALS = {
    "", "0", "none", "default string", "to be filled by o.e.m.", "to be filled by oem", "system serial number",
    "not specified", "not applicable", "chassis serial number", "base board serial number", "123456789",
    "0123456789", "oem", "o.e.m.", "serial", "xxxxxxxx", "00000000", "ffffffff",
    # SMBIOS UUIDs that boards ship unset: all ones, all zeros, and the AMI default sequence.
    "ffffffff-ffff-ffff-ffff-ffffffffffff", "00000000-0000-0000-0000-000000000000",
    "03000200-0400-0500-0006-000700080009",
}


@dataclass(frozen=True)
class UsbDevice:
    """One attached USB device (not an interface), as the device checks read it on every OS.

    ``vid``/``pid`` are four lowercase hex digits; ``serial`` is the iSerialNumber string ("" when the
    device has none); ``bus_path`` says where it sits (Linux: the sysfs name such as ``1-1.2``; Windows:
    the PNPDeviceID such as ``USB\\VID_04C5&PID_1234\\5&2B3C&0&3``).
    """

    vid: str
    pid: str
    serial: str = ""
    product: str = ""
    manufacturer: str = ""
    bus_path: str = ""
    # USB class codes seen on the device and its interfaces (0x08 = mass storage, 0x07 = printer).
    interface_classes: tuple[int, ...] = ()
    # Non-zero when the OS reports the device present but not working (Windows ConfigManagerErrorCode);
    # None when whether it works was not seen (the registry fallback lists present devices only).
    error_code: int | None = 0

    @property
    def working(self) -> bool:
        return self.error_code == 0


@dataclass(frozen=True)
class Route:
    destination: str  # CIDR, e.g. "0.0.0.0/0" or "::/0"
    gateway: str      # "" for on-link routes
    interface: str
    metric: int = 0

    @property
    def is_default(self) -> bool:
        return self.destination in ("0.0.0.0/0", "::/0")


# Adapter kinds; isolation.interfaces fails on an up adapter of a FORBIDDEN_KIND.
ADAPTER_KINDS = ("ethernet", "wireless", "cellular", "tunnel", "loopback", "virtual", "other")
FORBIDDEN_KINDS = ("wireless", "cellular", "tunnel")


@dataclass(frozen=True)
class Adapter:
    name: str
    kind: str          # one of ADAPTER_KINDS
    up: bool
    addresses: tuple[str, ...] = ()   # "10.1.2.3/24", "fe80::1/64"
    mac: str = ""
    description: str = ""             # driver / product text, for the message only
    physical: bool = False


@dataclass(frozen=True)
class StorageVolume:
    """A mounted volume that sits on a removable or USB-attached disk."""

    mountpoint: str
    device: str
    bus: str            # "usb", "mmc" (SD card), "removable" (the OS says so, bus unknown)
    serial: str = ""    # the USB device's (or disk's) serial, what allowed_usb_serials lists
    model: str = ""
    size_bytes: int | None = None
    details: dict = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    name: str
    exe: str = ""       # full path when readable ("" for other users' processes without privilege)
    username: str = ""


@dataclass(frozen=True)
class Listener:
    proto: str          # "tcp" or "udp"
    address: str
    port: int
    pid: int | None = None
    process: str = ""


@dataclass(frozen=True)
class Session:
    user: str
    terminal: str = ""
    host: str = ""       # remote host for an RDP/SSH session, "" when local
    started: float | None = None


def _read(getter) -> str:
    try:
        return getter() or ""
    except (psutil.Error, OSError):
        return ""


def _user_of(proc, names: dict[int, str]) -> str:
    """What psutil's ``username()`` gives, with each uid looked up once per process listing: on POSIX
    psutil asks the user database (NSS, /etc/passwd) again for every process, most of a listing's cost."""
    if pwd is None or not hasattr(proc, "uids"):
        return _read(proc.username)
    try:
        uid = proc.uids().real
    except (psutil.Error, OSError):
        return ""
    if uid not in names:
        try:
            names[uid] = pwd.getpwuid(uid).pw_name
        except KeyError:  # as psutil: a uid with no entry is shown as the number
            names[uid] = str(uid)
    return names[uid]


def is_placeholder(value: str | None) -> bool:
    return value is None or value.strip().lower() in PLACEHOLDER_SERIALS


class Platform:
    """Facts common to every OS (through psutil); subclasses add what needs OS APIs.

    Every fact a check reads is a method here, and :attr:`FACT_QUERIES` names the query behind it (a WMI
    class, a /proc file), which is what an ``error`` result names when the fact cannot be read. A fact whose
    platform has more than one source (WMI, else the registry) records the one it used for
    :meth:`fact_source`.
    """

    name = "generic"
    FACT_QUERIES: dict[str, str] = {
        "hostname": "gethostname", "os_description": "platform.release", "machine_id": "machine id",
        "hardware_ids": "SMBIOS", "physical_macs": "psutil.net_if_addrs", "processes": "psutil.pids",
        "listeners": "psutil.net_connections", "sessions": "psutil.users", "usb_devices": "USB devices",
        "routes": "routing table", "adapters": "network adapters", "removable_volumes": "mounted volumes",
        "printers": "printers", "cpu_ratio": "psutil.cpu_percent", "memory": "psutil.virtual_memory",
        "disk_usage": "psutil.disk_usage", "boot_time": "psutil.boot_time",
    }

    def fact_query(self, fact: str) -> str:
        return self.FACT_QUERIES.get(fact, fact)

    def fact_source(self, fact: str) -> str:
        """The source the last read of ``fact`` used (its query unless a fallback answered)."""
        return getattr(self, "_sources", {}).get(fact) or self.fact_query(fact)

    def _used(self, fact: str, source: str) -> None:
        self.__dict__.setdefault("_sources", {})[fact] = source

    def hostname(self) -> str:
        return socket.gethostname()

    def os_description(self) -> str:
        return f"{_stdlib_platform.system()} {_stdlib_platform.release()}"

    def boot_time(self) -> float:
        return psutil.boot_time()

    def cpu_ratio(self) -> float:
        return psutil.cpu_percent(interval=0.2) / 100

    def memory(self):
        """psutil.virtual_memory(): .total and .percent are what host.resources reads."""
        return psutil.virtual_memory()

    def disk_usage(self, path: str):
        return psutil.disk_usage(path)

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

    # -- processes, sockets, sessions: psutil gives these on every OS --------------------------------
    def processes(self) -> list[ProcessInfo]:
        """Every process whose name could be read; one that cannot be read is left out, not fatal.

        psutil raises per process (a process that ended, AccessDenied, and under Wine ``WinError 87`` for
        every exe path, which psutil also uses for the name), so each field is read on its own and a name
        psutil cannot give comes from :meth:`process_names` (the OS's own process snapshot). An empty list
        means nothing could be read, which usage.processes reports as ``error``.
        """
        fallback: dict[int, str] | None = None
        users: dict[int, str] = {}
        out = []
        for pid in psutil.pids():
            try:
                proc = psutil.Process(pid)
            except (psutil.Error, OSError):
                continue
            with proc.oneshot():  # one read of /proc/PID/stat and status serves all three fields
                name, exe, user = (_read(proc.name), _read(proc.exe), _user_of(proc, users))
            if not name and exe:
                name = exe.replace("\\", "/").rsplit("/", 1)[-1]
            if not name:
                if fallback is None:
                    fallback = self.process_names()
                name = fallback.get(pid, "")
            if name:
                out.append(ProcessInfo(pid=pid, name=name, exe=exe, username=user))
        return out

    def process_names(self) -> dict[int, str]:
        """pid -> executable name from a source other than psutil's per-process calls ({} when none)."""
        return {}

    def listeners(self) -> list[Listener]:
        """TCP sockets in LISTEN and bound UDP sockets with no peer (services waiting for clients)."""
        names: dict[int, str] = {}
        out = set()
        for c in psutil.net_connections(kind="inet"):
            if not c.laddr:
                continue
            tcp = c.type == socket.SOCK_STREAM
            if tcp and c.status != psutil.CONN_LISTEN:
                continue
            if not tcp and c.raddr:
                continue
            if c.pid and c.pid not in names:
                try:
                    names[c.pid] = psutil.Process(c.pid).name()
                except (psutil.Error, OSError):  # OSError: WinError 87 under Wine
                    names[c.pid] = self.process_names().get(c.pid, "")
            out.add(Listener("tcp" if tcp else "udp", c.laddr.ip, c.laddr.port, c.pid,
                             names.get(c.pid or -1, "")))
        return sorted(out, key=lambda x: (x.proto, x.port, x.address))

    def sessions(self) -> list[Session]:
        return [Session(u.name, u.terminal or "", u.host or "", u.started) for u in psutil.users()]

    # -- devices and network: OS-specific, the base class knows nothing -------------------------------
    def usb_devices(self) -> list[UsbDevice]:
        raise NotImplementedError

    def routes(self) -> list[Route]:
        raise NotImplementedError

    def adapters(self) -> list[Adapter]:
        raise NotImplementedError

    def removable_volumes(self) -> list[StorageVolume]:
        raise NotImplementedError

    def printers(self) -> list[dict]:
        """The local print queues as Win32_Printer rows (Windows only; Linux asks the local cupsd)."""
        raise NotImplementedError

    def fingerprint(self) -> Fingerprint:
        """What enrolment and every report carry: each fact that cannot be read is left empty here (the
        collector compares what it gets), and identity.fingerprint reports the failure as an error."""
        ids = _quiet(self.hardware_ids, {})
        serial = next((ids[k] for k in ("system_serial", "board_serial", "bios_serial")
                       if not is_placeholder(ids.get(k))), "")
        return Fingerprint(machine_id=_quiet(self.machine_id, ""), serial=serial, macs=_quiet(self.physical_macs, []))


def _quiet(fact, default):
    try:
        return fact()
    except Exception:  # a failed source is identity.fingerprint's error to report, not enrolment's crash
        return default
