"""Linux platform: recorded sysfs/proc trees through the same readers, and the live machine."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from agent.platform.linux import (
    LinuxPlatform,
    classify_interface,
    parse_proc_ipv6_route,
    parse_proc_route,
    read_usb_devices,
    removable_volumes_from,
)
from tests.conftest import require_tool

PROC_ROUTE = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0105A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t0005A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0
wwan0\t00000000\t01000A0A\t0003\t0\t0\t700\t00000000\t0\t0\t0
eth0\t0009A8C0\t00000000\t0201\t0\t0\t0\t00FFFFFF\t0\t0\t0
"""
PROC_IPV6_ROUTE = """\
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth0
fd000000000000000000000000000002 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000003 00000000 80200001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
"""


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def test_proc_routes():
    routes = parse_proc_route(PROC_ROUTE)
    assert [(r.destination, r.gateway, r.interface, r.metric) for r in routes] == [
        ("0.0.0.0/0", "192.168.5.1", "eth0", 100), ("192.168.5.0/24", "", "eth0", 100),
        ("0.0.0.0/0", "10.10.0.1", "wwan0", 700)]  # the reject route is left out
    v6 = parse_proc_ipv6_route(PROC_IPV6_ROUTE)
    assert [(r.destination, r.gateway, r.interface) for r in v6] == [("::/0", "fd00::1", "eth0")]


def test_live_routes_match_ip_route():
    require_tool("ip", "iproute2")
    shown = json.loads(subprocess.run(["ip", "-j", "-4", "route", "show", "table", "main"], capture_output=True,
                                      text=True, check=True).stdout)
    expected = {(r.get("gateway", ""), r["dev"]) for r in shown if r["dst"] == "default"}
    mine = {(r.gateway, r.interface) for r in LinuxPlatform().routes() if r.destination == "0.0.0.0/0"}
    assert mine == expected


def test_live_adapters_and_identity():
    p = LinuxPlatform()
    adapters = {a.name: a for a in p.adapters()}
    assert adapters["lo"].kind == "loopback" and adapters["lo"].up
    assert any(addr.startswith("127.0.0.1/") for addr in adapters["lo"].addresses)
    assert p.machine_id() == Path("/etc/machine-id").read_text().strip()
    assert p.os_description()


def usb_tree(root: Path) -> Path:
    """/sys/devices/.../usb1/1-1 (a storage stick) and 1-2 (an LTE modem), linked from /sys/bus/usb/devices."""
    devs = root / "sys/devices/pci0000:00/0000:00:14.0/usb1"
    write(devs / "idVendor", "1d6b")  # the root hub itself
    stick, modem = devs / "1-1", devs / "1-2"
    for d, vid, pid, serial, product in ((stick, "0951", "1666", "60A44C413A8CF0B1A99C0E3B", "DataTraveler 3.0"),
                                         (modem, "12d1", "14db", "", "HUAWEI_MOBILE")):
        write(d / "idVendor", vid)
        write(d / "idProduct", pid)
        write(d / "bDeviceClass", "00")
        write(d / "product", product)
        write(d / "manufacturer", "Kingston" if vid == "0951" else "HUAWEI")
        if serial:
            write(d / "serial", serial)
    write(stick / "1-1:1.0" / "bInterfaceClass", "08")
    write(modem / "1-2:1.0" / "bInterfaceClass", "02")
    bus = root / "sys/bus/usb/devices"
    bus.mkdir(parents=True)
    for name, target in (("usb1", devs), ("1-1", stick), ("1-2", modem), ("1-1:1.0", stick / "1-1:1.0")):
        os.symlink(target, bus / name)
    return devs


def test_usb_devices_from_sysfs(tmp_path):
    usb_tree(tmp_path)
    devices = {d.bus_path: d for d in read_usb_devices(tmp_path / "sys/bus/usb/devices")}
    assert set(devices) == {"1-1", "1-2"}  # root hub and interfaces are not devices
    stick = devices["1-1"]
    assert (stick.vid, stick.pid, stick.serial, stick.product, stick.interface_classes) == (
        "0951", "1666", "60A44C413A8CF0B1A99C0E3B", "DataTraveler 3.0", (0x08,))
    assert LinuxPlatform(str(tmp_path)).usb_devices() == list(devices.values())


def test_interface_kinds_from_sysfs(tmp_path):
    devs = usb_tree(tmp_path)
    net = tmp_path / "sys/class/net"
    cases = {
        "eth0": ({"type": "1", "uevent": "INTERFACE=eth0"}, "e1000e", None),
        "wlan0": ({"type": "1", "uevent": "DEVTYPE=wlan\nINTERFACE=wlan0", "phy80211/name": "phy0"}, "iwlwifi", None),
        "wwan0": ({"type": "1", "uevent": "INTERFACE=wwan0"}, "cdc_ether", devs / "1-2" / "1-2:1.0"),
        "usb0": ({"type": "1", "uevent": "INTERFACE=usb0"}, "rndis_host", None),
        "tun0": ({"type": "65534", "uevent": "DEVTYPE=tun", "tun_flags": "0x1001"}, None, None),
        "wg0": ({"type": "65534", "uevent": "DEVTYPE=wireguard"}, None, None),
        "docker0": ({"type": "1", "uevent": "DEVTYPE=bridge"}, None, None),
        "lo": ({"type": "772", "uevent": "INTERFACE=lo"}, None, None),
    }
    for name, (files, driver, device_dir) in cases.items():
        for leaf, text in files.items():
            write(net / name / leaf, text)
        if driver:
            device_dir = device_dir or tmp_path / f"sys/devices/pci0000:00/{name}"
            drv = tmp_path / f"sys/bus/drivers/{driver}"
            drv.mkdir(parents=True, exist_ok=True)
            device_dir.mkdir(parents=True, exist_ok=True)
            if not (device_dir / "driver").exists():
                os.symlink(drv, device_dir / "driver")
            os.symlink(device_dir, net / name / "device")
    kinds = {name: classify_interface(net / name)[0] for name in cases}
    assert kinds == {"eth0": "ethernet", "wlan0": "wireless", "wwan0": "cellular", "usb0": "cellular",
                     "tun0": "tunnel", "wg0": "tunnel", "docker0": "virtual", "lo": "loopback"}


def test_removable_volumes_from_sysfs(tmp_path):
    devs = usb_tree(tmp_path)
    disk = devs / "1-1/1-1:1.0/host6/target6:0:0/6:0:0:0/block/sdb"
    write(disk / "removable", "1")
    write(disk / "size", "30277632")
    write(disk / "device" / "vendor", "Kingston")
    write(disk / "device" / "model", "DataTraveler 3.0")
    write(disk / "sdb1" / "partition", "1")
    sata = tmp_path / "sys/devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda"
    write(sata / "removable", "0")
    write(sata / "sda2" / "partition", "2")
    block = tmp_path / "sys/class/block"
    block.mkdir(parents=True)
    for name, target in (("sdb1", disk / "sdb1"), ("sda2", sata / "sda2"), ("sdb", disk)):
        os.symlink(target, block / name)
    mounts = ("/dev/sda2 / ext4 rw,relatime 0 0\nproc /proc proc rw 0 0\n"
              "/dev/sdb1 /media/zhang/KINGSTON\\040USB vfat rw,nosuid 0 0\n")
    vols = removable_volumes_from(mounts, block)
    assert len(vols) == 1
    v = vols[0]
    assert (v.mountpoint, v.device, v.bus, v.serial, v.model) == (
        "/media/zhang/KINGSTON USB", "/dev/sdb1", "usb", "60A44C413A8CF0B1A99C0E3B", "Kingston DataTraveler 3.0")
    assert v.size_bytes == 30277632 * 512
