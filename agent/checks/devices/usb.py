"""USB probe: an OCR scanner, USB KEY, card reader or USB printer is plugged in and enumerated cleanly.

Listing USB devices is an OS fact. When the platform layer offers ``usb_devices()`` we use it; otherwise
the two pure parsers here do the work: :func:`linux_usb_devices` reads sysfs under a root (tests give a
fake tree) and :func:`windows_usb_devices` reads the JSON of ``Get-CimInstance Win32_PnPEntity`` (tests
give recorded output). Both return ``list[UsbDevice]``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from agent.checks.devices.common import MethodResult, broken, cannot, ok
from agent.confignode import Node, optional
from agent.datafiles import config_path

# Interface classes that are never the scanner we look for when matching by vendor catalogue: a Canon
# or HP vendor ID also covers their printers, keyboards and card readers (USB class codes, usb.org).
NOT_A_SCANNER = {0x03, 0x07, 0x08, 0x09}  # HID, printer, mass storage, hub
CATALOGUES = {"scanners": "scanner_vendors.yaml"}


@dataclass(frozen=True)
class UsbDevice:
    vid: str  # four lower-case hex digits
    pid: str
    serial: str = ""
    product: str = ""
    manufacturer: str = ""
    interface_classes: tuple[int, ...] = ()
    error_code: int = 0  # Windows ConfigManagerErrorCode; non-zero = present but not working
    where: str = ""  # sysfs name or PnP device id, for the report


@dataclass
class UsbConfig:
    vid: str | None = None
    pid: str | None = None
    serial: str | None = None
    catalogue: str | None = None
    vendor_ids: tuple[str, ...] = ()


class UsbUnavailable(Exception):
    pass


def parse(node: Node, repo_configs: Path | None = None) -> UsbConfig:
    """``usb: "04c5"``, ``usb: "04c5:1234"`` or ``usb: {vid, pid, serial}`` or ``usb: {catalogue: scanners}``."""
    if not node.is_mapping():
        vid, _, pid = node.str().strip().lower().partition(":")
        return UsbConfig(_hex4(node, vid), _hex4(node, pid) if pid else None)
    m = node.mapping(("vid", "pid", "serial", "catalogue"))
    if ("vid" in m) == ("catalogue" in m):
        node.fail("give either 'vid' (with optional 'pid', 'serial') or 'catalogue'")
    if "catalogue" in m:
        name = m["catalogue"].choice(tuple(CATALOGUES))
        return UsbConfig(catalogue=name, vendor_ids=load_catalogue(name, repo_configs))
    if "pid" not in m and "serial" in m:
        m["serial"].fail("'serial' needs 'pid' as well")
    return UsbConfig(_hex4(m["vid"], _text(m["vid"])),
                     optional(m, "pid", None, lambda n: _hex4(n, _text(n))),
                     optional(m, "serial", None, Node.str))


def _text(n: Node) -> str:
    # YAML reads an unquoted 1234 as a number; a USB id is hex text either way.
    return str(n.value).strip().lower()


def _hex4(node: Node, text: str) -> str:
    text = text.lower().removeprefix("0x")
    if not re.fullmatch(r"[0-9a-f]{4}", text):
        node.fail(f"'{text}' is not a USB id (four hex digits, e.g. 04c5)")
    return text


def load_catalogue(name: str, configs_dir: Path | None = None) -> tuple[str, ...]:
    import yaml

    base = configs_dir or config_path("scanner_vendors.yaml").parent
    data = yaml.safe_load((base / CATALOGUES[name]).read_text(encoding="utf-8"))
    return tuple(str(v["vid"]).lower() for v in data["vendors"])


# -- listing --------------------------------------------------------------------------------------------


def linux_usb_devices(root: str | os.PathLike = "/") -> list[UsbDevice]:
    """USB devices from ``<root>/sys/bus/usb/devices``: entries with idVendor are devices, entries named
    ``<dev>:<config>.<if>`` are their interfaces."""
    base = Path(root) / "sys/bus/usb/devices"
    if not base.is_dir():
        raise UsbUnavailable(f"{base} does not exist")
    out = []
    for entry in sorted(base.iterdir()):
        if ":" in entry.name or not (entry / "idVendor").exists():
            continue
        classes = []
        for iface in sorted(base.glob(f"{entry.name}:*")):
            cls = _read(iface / "bInterfaceClass")
            if cls:
                classes.append(int(cls, 16))
        out.append(UsbDevice(vid=_read(entry / "idVendor").lower(), pid=_read(entry / "idProduct").lower(),
                             serial=_read(entry / "serial"), product=_read(entry / "product"),
                             manufacturer=_read(entry / "manufacturer"), interface_classes=tuple(classes),
                             where=entry.name))
    return out


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


_PNP_ID = re.compile(r"^USB\\VID_([0-9A-F]{4})&PID_([0-9A-F]{4})(&MI_[0-9A-F]{2})?\\(.*)$", re.I)
# Windows makes up an instance id ("6&2a0c1b2&0&3") for devices without a serial number; those contain '&'.
_MADE_UP_SERIAL = re.compile(r"&")
# PNPClass of a composite device's interfaces, mapped to USB class codes for catalogue matching.
_PNP_CLASS = {"printer": 0x07, "keyboard": 0x03, "mouse": 0x03, "hidclass": 0x03, "diskdrive": 0x08,
              "usb": 0x09, "image": 0xFF, "wpd": 0x06}


def windows_usb_devices(pnp_json: str | list | dict) -> list[UsbDevice]:
    """Parse ``Get-CimInstance Win32_PnPEntity -Filter "PNPDeviceID LIKE 'USB%'" | ConvertTo-Json``.

    ``USB\\VID_04C5&PID_132B\\SERIAL`` is a device; ``…&MI_00\\…`` entries are interfaces of a composite
    device and lend their class to it. ConvertTo-Json gives a bare object for a single result.
    """
    rows = json.loads(pnp_json) if isinstance(pnp_json, str) else pnp_json
    rows = [rows] if isinstance(rows, dict) else (rows or [])
    devices: dict[tuple[str, str], dict] = {}
    interfaces: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        m = _PNP_ID.match(str(row.get("PNPDeviceID") or ""))
        if not m:
            continue
        key = (m.group(1).lower(), m.group(2).lower())
        cls = _PNP_CLASS.get(str(row.get("PNPClass") or "").lower())
        if m.group(3):
            if cls is not None:
                interfaces.setdefault(key, []).append(cls)
            continue
        tail = m.group(4)
        devices[key + (tail,)] = {"row": row, "serial": "" if _MADE_UP_SERIAL.search(tail) else tail,
                                  "cls": cls}
    out = []
    for (vid, pid, _tail), d in devices.items():
        row = d["row"]
        classes = tuple(interfaces.get((vid, pid), [])) or ((d["cls"],) if d["cls"] is not None else ())
        out.append(UsbDevice(vid=vid, pid=pid, serial=d["serial"], product=str(row.get("Name") or ""),
                             manufacturer=str(row.get("Manufacturer") or ""), interface_classes=classes,
                             error_code=int(row.get("ConfigManagerErrorCode") or 0),
                             where=str(row.get("PNPDeviceID"))))
    return out


WINDOWS_QUERY = ("Get-CimInstance Win32_PnPEntity -Filter \"PNPDeviceID LIKE 'USB%'\" | "
                 "Select-Object PNPDeviceID,Name,Manufacturer,PNPClass,Status,ConfigManagerErrorCode | "
                 "ConvertTo-Json -Compress")


def list_devices(platform=None) -> list[UsbDevice]:
    """The attached USB devices, from the platform layer when it has them, else from the OS directly."""
    fn = getattr(platform, "usb_devices", None)
    if callable(fn):
        try:
            return [d if isinstance(d, UsbDevice) else _coerce(d) for d in fn()]
        except NotImplementedError:
            pass  # a platform without a USB listing of its own: read the OS directly below
    if sys.platform.startswith("linux"):
        return linux_usb_devices("/")
    if sys.platform == "win32":
        try:
            out = subprocess.run(["powershell", "-NoProfile", "-NonInteractive", "-Command", WINDOWS_QUERY],
                                 capture_output=True, timeout=20, check=True)
        except (OSError, subprocess.SubprocessError) as exc:
            raise UsbUnavailable(f"PowerShell query failed: {exc}") from exc
        # Windows PowerShell writes JSON in the console code page only for non-ASCII names; try UTF-8 first.
        text = out.stdout.decode("utf-8", errors="replace").strip()
        return windows_usb_devices(text or "[]")
    raise UsbUnavailable(f"no USB listing on {sys.platform}")


def _coerce(d) -> UsbDevice:
    """The platform layer's ``agent.platform.UsbDevice`` (classes as hex text, ``working``, ``bus_path``)
    or a plain mapping, as ours."""
    get = (lambda k: d.get(k)) if isinstance(d, dict) else (lambda k: getattr(d, k, None))
    classes = get("interface_classes") or get("classes") or ()
    error = get("error_code")
    if error is None:
        error = 0 if get("working") in (None, True) else 1
    return UsbDevice(vid=str(get("vid") or "").lower(), pid=str(get("pid") or "").lower(),
                     serial=str(get("serial") or ""), product=str(get("product") or ""),
                     manufacturer=str(get("manufacturer") or ""),
                     interface_classes=tuple(int(c, 16) if isinstance(c, str) else int(c) for c in classes),
                     error_code=int(error), where=str(get("where") or get("bus_path") or ""))


# -- matching -------------------------------------------------------------------------------------------


def matches(cfg: UsbConfig, dev: UsbDevice) -> bool:
    if cfg.catalogue:
        known = set(dev.interface_classes)
        return dev.vid in cfg.vendor_ids and not (known and known <= NOT_A_SCANNER)
    return (dev.vid == cfg.vid and (cfg.pid is None or dev.pid == cfg.pid)
            and (cfg.serial is None or dev.serial == cfg.serial))


def describe(cfg: UsbConfig) -> str:
    if cfg.catalogue:
        return "扫描仪厂商目录中的 USB 设备"
    return f"USB {cfg.vid}:{cfg.pid or '*'}" + (f"（序列号 {cfg.serial}）" if cfg.serial else "")


def run(cfg: UsbConfig, devices: list[UsbDevice] | Exception) -> MethodResult:
    if isinstance(devices, Exception):
        return cannot("usb", f"无法读取 USB 设备列表：{devices}", error=str(devices))
    found = [d for d in devices if matches(cfg, d)]
    wanted = describe(cfg)
    if not found:
        return MethodResult("usb", False, "fail", f"未检测到{wanted}（未连接或未通电）",
                            {"wanted": wanted, "usb_devices_seen": len(devices)})
    details = {"matched": [{"vid": d.vid, "pid": d.pid, "serial": d.serial, "product": d.product,
                            "manufacturer": d.manufacturer, "where": d.where} for d in found]}
    good = [d for d in found if d.error_code == 0]
    name = found[0].product or f"{found[0].vid}:{found[0].pid}"
    if not good:
        return broken("usb", f"{name} 已连接但工作不正常（设备管理器错误代码 {found[0].error_code}）",
                      **details, error_code=found[0].error_code)
    return ok("usb", f"已连接：{good[0].product or name}", **details)
