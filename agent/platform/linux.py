"""Linux facts (Debian, Ubuntu and the domestic Kylin / UOS): /etc, sysfs and /proc, never command text."""

from __future__ import annotations

import os
from pathlib import Path

from agent.platform import Platform, UsbDevice


class LinuxPlatform(Platform):
    name = "linux"

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


def read_usb_devices(sysfs_usb: Path) -> list[UsbDevice]:
    """Devices under /sys/bus/usb/devices: entries with an idVendor that are not root hubs (``usbN``).

    Interfaces (``1-1:1.0``) carry no idVendor; their bInterfaceClass values become ``classes``.
    """
    try:
        entries = sorted(sysfs_usb.iterdir())
    except OSError:
        return []
    devices = []
    for entry in entries:
        name = entry.name
        if ":" in name or name.startswith("usb") or not (entry / "idVendor").exists():
            continue

        def attr(leaf: str, base: Path = entry) -> str:
            try:
                return (base / leaf).read_text(encoding="utf-8", errors="replace").strip()
            except OSError:
                return ""

        classes = set()
        device_class = attr("bDeviceClass")
        if device_class and device_class != "00":
            classes.add(device_class.lower())
        for iface in entry.glob(f"{name}:*"):
            cls = attr("bInterfaceClass", iface)
            if cls:
                classes.add(cls.lower())
        devices.append(UsbDevice(vid=attr("idVendor").lower(), pid=attr("idProduct").lower(), serial=attr("serial"),
                                 product=attr("product"), manufacturer=attr("manufacturer"), bus_path=name,
                                 classes=tuple(sorted(classes))))
    return devices
