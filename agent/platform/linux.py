"""Linux facts (Debian, Ubuntu and the domestic Kylin / UOS): /etc, sysfs and /proc, never command text."""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import sys
from pathlib import Path

import psutil

from agent.platform.facts import Adapter, Listener, Platform, Route, StorageVolume, UsbDevice

# /sys/class/net/*/type (ARPHRD_*) values that are tunnels: ipip, ip6tnl, sit, gre, ip6gre, ppp, none (tun,
# WireGuard). 772 is loopback.
ARPHRD_TUNNEL = {768: "ipip", 769: "ip6tnl", 776: "sit", 778: "gre", 823: "ip6gre", 512: "ppp", 65534: "none"}
ARPHRD_LOOPBACK = 772
ARPHRD_RAWIP = 519  # qmi_wwan in raw-IP mode: an LTE modem
# Drivers that are a phone's or a 4G dongle's network, not a USB Ethernet adapter.
CELLULAR_DRIVERS = {"rndis_host", "ipheth", "qmi_wwan", "cdc_mbim", "huawei_cdc_ncm", "gobinet", "sierra_net",
                    "option", "cdc_subset"}
# USB vendors whose cdc_ether devices are LTE dongles in "HiLink" mode (Huawei, ZTE, Quectel, Qualcomm,
# Fibocom, Sierra Wireless, SIMCom).
MODEM_VENDORS = {"12d1", "19d2", "2c7c", "05c6", "2cb7", "1199", "1e0e"}
RTF_UP, RTF_REJECT, RTF_LOCAL = 0x0001, 0x0200, 0x80000000


class LinuxPlatform(Platform):
    name = "linux"
    FACT_QUERIES = {**Platform.FACT_QUERIES, "machine_id": "/etc/machine-id", "hardware_ids": "/sys/class/dmi/id",
                    "physical_macs": "/sys/class/net", "usb_devices": "/sys/bus/usb/devices",
                    "routes": "/proc/net/route", "adapters": "psutil.net_if_stats+/sys/class/net",
                    "removable_volumes": "/proc/self/mounts", "listeners": "/proc/net/tcp",
                    "os_description": "/etc/os-release", "printers": "CUPS (localhost:631)"}

    def __init__(self, root: str = "/"):
        # `root` lets tests point the platform at a recorded copy of /etc, /proc and /sys.
        self.root = Path(root)

    def _path(self, rel: str) -> Path:
        return self.root / rel.lstrip("/")

    def _read(self, rel: str) -> str:
        try:
            return self._path(rel).read_text(encoding="utf-8", errors="replace").strip()
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

    # -- USB ---------------------------------------------------------------------------------------
    def usb_devices(self) -> list[UsbDevice]:
        return read_usb_devices(self._path("/sys/bus/usb/devices"))

    # -- network -----------------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        # /proc/net/route always has its header line: nothing at all is a read that failed, not "no route".
        table = self._read("/proc/net/route")
        if not table:
            raise OSError("cannot read /proc/net/route")
        return parse_proc_route(table) + parse_proc_ipv6_route(self._read("/proc/net/ipv6_route"))

    def adapters(self) -> list[Adapter]:
        stats = psutil.net_if_stats()
        addrs = psutil.net_if_addrs()
        out = []
        for name in sorted(set(stats) | set(addrs)):
            st = stats.get(name)
            if not self._path(f"/sys/class/net/{name}").exists():
                # Without its sysfs directory an adapter's kind cannot be told (a Wi-Fi card would read as
                # virtual): a source that is missing, never a guess.
                raise OSError(f"/sys/class/net/{name} is missing: the kind of adapter {name!r} cannot be told")
            operstate = self._read(f"/sys/class/net/{name}/operstate")
            # Administratively up and not reported down: "unknown" is what tun, lo and many drivers say.
            up = bool(st and st.isup) and operstate not in ("down", "lowerlayerdown", "notpresent")
            kind, description = classify_interface(self._path(f"/sys/class/net/{name}"))
            ips, mac = [], ""
            for a in addrs.get(name, []):
                if a.family in (socket.AF_INET, socket.AF_INET6) and a.address:
                    ip = a.address.split("%")[0]
                    ips.append(f"{ip}/{_prefixlen(a.netmask)}" if a.netmask else ip)
                elif a.family == psutil.AF_LINK:
                    mac = a.address.lower()
            out.append(Adapter(name=name, kind=kind, up=up, addresses=tuple(ips), mac=mac, description=description,
                               physical=kind in ("ethernet", "wireless", "cellular")
                               and self._path(f"/sys/class/net/{name}/device").exists()))
        return out

    def physical_macs(self) -> list[str]:
        """Permanent MACs of NICs on the board or a PCI card: a USB adapter or phone comes and goes."""
        macs = set()
        for entry in _listdir(self._path("/sys/class/net")):
            dev = entry / "device"
            if not dev.exists() or "/usb" in _resolved(dev):
                continue
            # addr_assign_type 0 = permanent; 1 (random, Wi-Fi privacy) or 3 (set by user) are not identity.
            if _read_file(entry / "addr_assign_type") not in ("", "0"):
                continue
            mac = _read_file(entry / "address").lower()
            if mac and mac != "00:00:00:00:00:00":
                macs.add(mac)
        return sorted(macs)

    # -- storage -----------------------------------------------------------------------------------
    def listeners(self) -> list[Listener]:
        """Listening TCP and unconnected UDP sockets from /proc/net, owners found once per socket.

        psutil.net_connections maps every socket of every process to its pid by reading all of /proc/*/fd
        on each call, which is most of what this check would cost. The listening sockets come from /proc/net
        (cheap), and only a socket not seen before sends us through /proc/*/fd, stopping when all are found.
        """
        found = []
        for name, proto, six in (("tcp", "tcp", False), ("tcp6", "tcp", True), ("udp", "udp", False),
                                 ("udp6", "udp", True)):
            text = self._read(f"proc/net/{name}")
            if not text and name == "tcp":  # always there with its header line; empty = not read
                raise OSError("cannot read /proc/net/tcp")
            found.extend((proto, *sock) for sock in parse_proc_net_sockets(text, six, tcp=proto == "tcp"))
        owners = self.__dict__.setdefault("_socket_owners", {})
        unknown = {inode for *_, inode in found if inode not in owners}
        if unknown:
            owners.update(self._socket_pids(unknown))
        live = {inode for *_, inode in found}
        for inode in [i for i in owners if i not in live]:  # closed sockets: forget them
            del owners[inode]
        out = {Listener(proto, addr, port, *owners.get(inode, (None, ""))) for proto, addr, port, inode in found}
        return sorted(out, key=lambda x: (x.proto, x.port, x.address))

    def _socket_pids(self, inodes: set[int]) -> dict[int, tuple[int | None, str]]:
        wanted = {f"socket:[{i}]": i for i in inodes}
        out: dict[int, tuple[int | None, str]] = {i: (None, "") for i in inodes}  # unreadable stays unknown
        left = len(wanted)
        for pid_dir in _listdir(self._path("proc")):
            if not pid_dir.name.isdigit():
                continue
            try:
                fds = os.listdir(pid_dir / "fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    inode = wanted.get(os.readlink(pid_dir / "fd" / fd))
                except OSError:
                    continue
                if inode is not None and out[inode][0] is None:
                    pid = int(pid_dir.name)
                    try:
                        name = psutil.Process(pid).name()
                    except psutil.Error:
                        name = ""
                    out[inode] = (pid, name)
                    left -= 1
            if not left:
                break
        return out

    def removable_volumes(self) -> list[StorageVolume]:
        mounts = self._read("/proc/self/mounts")
        if not mounts:  # "/" is always mounted: nothing is a read that failed, not "no USB stick"
            raise OSError("cannot read /proc/self/mounts")
        return removable_volumes_from(mounts, self._path("/sys/class/block"))


def read_usb_devices(sysfs_usb: Path) -> list[UsbDevice]:
    """Devices under /sys/bus/usb/devices: entries with an idVendor that are not root hubs (``usbN``).

    Interfaces (``1-1:1.0``) carry no idVendor; their bInterfaceClass values, with the device's own
    bDeviceClass when it is not 00 ("see the interfaces"), become ``interface_classes``. The kernel lists
    an interface both inside its device's directory and beside it in /sys/bus/usb/devices; both are read.

    Raises OSError when the directory cannot be read or lists no root hub: every USB controller has one,
    so an empty listing is no answer, not "nothing plugged in".
    """
    entries = sorted(sysfs_usb.iterdir())
    if not any(e.name.startswith("usb") for e in entries):
        raise OSError(f"no USB root hub under {sysfs_usb}: the USB listing is unavailable")
    devices = []
    for entry in entries:
        name = entry.name
        if ":" in name or name.startswith("usb") or not (entry / "idVendor").exists():
            continue
        classes = set()
        device_class = _read_file(entry / "bDeviceClass")
        if device_class and device_class != "00":
            classes.add(int(device_class, 16))
        interfaces = {i.name: i for i in [*entry.glob(f"{name}:*"), *sysfs_usb.glob(f"{name}:*")]}
        for iface in interfaces.values():
            cls = _read_file(iface / "bInterfaceClass")
            if cls:
                classes.add(int(cls, 16))
        devices.append(UsbDevice(vid=_read_file(entry / "idVendor").lower(),
                                 pid=_read_file(entry / "idProduct").lower(), serial=_read_file(entry / "serial"),
                                 product=_read_file(entry / "product"),
                                 manufacturer=_read_file(entry / "manufacturer"), bus_path=name,
                                 interface_classes=tuple(sorted(classes))))
    return devices


def _read_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


def _listdir(path: Path) -> list[Path]:
    try:
        return sorted(path.iterdir())
    except OSError:
        return []


def _resolved(path: Path) -> str:
    try:
        return str(path.resolve())
    except OSError:
        return ""


def classify_interface(sysdir: Path) -> tuple[str, str]:
    """(kind, description) of one /sys/class/net/<name> directory; see ADAPTER_KINDS."""
    uevent = dict(line.partition("=")[::2] for line in _read_file(sysdir / "uevent").splitlines())
    devtype = uevent.get("DEVTYPE", "").lower()
    try:
        arphrd = int(_read_file(sysdir / "type") or 1)
    except ValueError:
        arphrd = 1
    driver = os.path.basename(_resolved(sysdir / "device" / "driver")).lower() if (sysdir / "device").exists() else ""
    if arphrd == ARPHRD_LOOPBACK:
        return "loopback", "loopback"
    if (sysdir / "wireless").exists() or (sysdir / "phy80211").exists() or devtype == "wlan":
        return "wireless", f"wireless ({driver or 'wlan'})"
    if devtype == "wwan" or arphrd == ARPHRD_RAWIP or driver in CELLULAR_DRIVERS:
        return "cellular", f"cellular/USB tether ({driver or devtype or 'wwan'})"
    if driver == "cdc_ether":
        vendor = _read_file(sysdir / "device" / ".." / "idVendor").lower()
        if vendor in MODEM_VENDORS:
            return "cellular", f"4G modem in Ethernet mode (cdc_ether, USB vendor {vendor})"
    if (sysdir / "tun_flags").exists() or devtype in ("wireguard", "vxlan", "ipsec") or arphrd in ARPHRD_TUNNEL:
        return "tunnel", f"tunnel/VPN ({devtype or ARPHRD_TUNNEL.get(arphrd, 'tun/tap')})"
    if not (sysdir / "device").exists():
        # veth, bridge, bond, dummy, docker0: software interfaces with no hardware behind them.
        return "virtual", f"virtual ({devtype or 'software'})"
    if arphrd == 1:
        return "ethernet", f"ethernet ({driver or 'unknown driver'})"
    return "other", f"ARPHRD {arphrd}"


def _prefixlen(netmask: str) -> int:
    return bin(int(ipaddress.ip_address(netmask.split("%")[0]))).count("1")


def _hex_ipv4(text: str) -> str:
    return socket.inet_ntoa(struct.pack("<I", int(text, 16)))


def parse_proc_route(text: str) -> list[Route]:
    """/proc/net/route: little-endian hex addresses; only routes that are up."""
    routes = []
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 8:
            continue
        flags = int(f[3], 16)
        if not flags & RTF_UP or flags & RTF_REJECT:
            continue
        dest, gw, mask = _hex_ipv4(f[1]), _hex_ipv4(f[2]), _hex_ipv4(f[7])
        net = ipaddress.ip_network(f"{dest}/{mask}", strict=False)
        routes.append(Route(str(net), "" if gw == "0.0.0.0" else gw, f[0], int(f[6])))
    return routes


def parse_proc_ipv6_route(text: str) -> list[Route]:
    """/proc/net/ipv6_route: dest, plen, src, splen, next hop, metric, refcnt, use, flags, iface."""
    routes = []
    for line in text.splitlines():
        f = line.split()
        if len(f) < 10:
            continue
        flags = int(f[8], 16)
        # Local (own address) and reject routes, and the loopback table, are not ways out of the machine.
        if not flags & RTF_UP or flags & (RTF_REJECT | RTF_LOCAL) or f[9] == "lo":
            continue
        dest = ipaddress.IPv6Address(bytes.fromhex(f[0]))
        gw = ipaddress.IPv6Address(bytes.fromhex(f[4]))
        routes.append(Route(f"{dest}/{int(f[1], 16)}", "" if gw.is_unspecified else str(gw), f[9], int(f[5], 16)))
    return routes


def _unescape_mount(text: str) -> str:
    return text.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")


def parse_proc_net_sockets(text: str, ipv6: bool, tcp: bool) -> list[tuple[str, int, int]]:
    """(address, port, inode) of listening TCP (state 0A) or unconnected UDP sockets in /proc/net/{tcp,udp}[6]."""
    out = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
        if tcp and state != "0A":
            continue
        if not tcp and not remote.endswith(":0000"):
            continue
        try:
            hexaddr, hexport = local.split(":")
            out.append((_proc_net_address(hexaddr, ipv6), int(hexport, 16), int(inode)))
        except ValueError:
            continue
    return out


def _proc_net_address(hexaddr: str, ipv6: bool) -> str:
    raw = bytes.fromhex(hexaddr)
    if sys.byteorder == "little":  # the kernel prints each 32-bit word in host order
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET6 if ipv6 else socket.AF_INET, raw)


def removable_volumes_from(mounts: str, sys_block: Path) -> list[StorageVolume]:
    """Mounted block devices whose disk is USB-attached, an SD card, or flagged removable by the kernel."""
    out, seen = [], set()
    for line in mounts.splitlines():
        f = line.split()
        if len(f) < 3 or not f[0].startswith("/dev/"):
            continue
        device, mountpoint = _unescape_mount(f[0]), _unescape_mount(f[1])
        node = sys_block / os.path.basename(os.path.realpath(device) if device.startswith("/dev/mapper") else device)
        if not node.exists() or (device, mountpoint) in seen:
            continue
        real = Path(_resolved(node))
        disk = real.parent if (real / "partition").exists() else real  # sdb1 -> sdb
        path = str(real)
        removable = _read_file(disk / "removable") == "1"
        if "/usb" in path:
            bus = "usb"
        elif disk.name.startswith("mmcblk"):
            bus = "mmc"
        elif removable:
            bus = "removable"
        else:
            continue
        seen.add((device, mountpoint))
        serial = ""
        # Walk up from the disk to the USB device directory, which holds the iSerialNumber.
        for parent in [disk, *disk.parents]:
            if (parent / "idVendor").exists():
                serial = _read_file(parent / "serial")
                break
        if not serial:
            serial = _read_file(disk / "device" / "serial") or _read_file(disk / "device" / "wwid")
        model = " ".join(x for x in (_read_file(disk / "device" / "vendor"), _read_file(disk / "device" / "model")) if x)
        size = _read_file(disk / "size")
        out.append(StorageVolume(mountpoint=mountpoint, device=device, bus=bus, serial=serial, model=model,
                                 size_bytes=int(size) * 512 if size.isdigit() else None,
                                 details={"fstype": f[2], "disk": disk.name}))
    return out
