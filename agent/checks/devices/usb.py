"""USB probe: an OCR scanner, USB KEY, card reader or USB printer is plugged in and enumerated cleanly.

Listing USB devices is an OS fact, so it is the platform layer's ``usb_devices()`` (sysfs on Linux,
Win32_PnPEntity on Windows, each with its own recorded-facts tests); this module only matches the listing
against what the config asks for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from agent.checks import read_fact
from agent.checks.devices.common import DeviceConfig, MethodResult, ProbeContext, broken, cannot, ok, warn
from agent.confignode import Node, optional
from agent.datafiles import config_path
from agent.platform import UsbDevice

# Interface classes that are never the scanner we look for when matching by vendor catalogue: a Canon
# or HP vendor ID also covers their printers, keyboards and card readers (USB class codes, usb.org).
NOT_A_SCANNER = {0x03, 0x07, 0x08, 0x09}  # HID, printer, mass storage, hub
CATALOGUES = {"scanners": "scanner_vendors.yaml"}


@dataclass
class UsbConfig:
    vid: str | None = None
    pid: str | None = None
    serial: str | None = None
    catalogue: str | None = None
    vendor_ids: tuple[str, ...] = ()


class UsbUnavailable(Exception):
    pass


def parse(node: Node, device: DeviceConfig) -> UsbConfig:
    """``usb: "04c5"``, ``usb: "04c5:1234"`` or ``usb: {vid, pid, serial}`` or ``usb: {catalogue: scanners}``."""
    if not node.is_mapping():
        vid, _, pid = node.str().strip().lower().partition(":")
        return UsbConfig(_hex4(node, vid), _hex4(node, pid) if pid else None)
    m = node.mapping(("vid", "pid", "serial", "catalogue"))
    if ("vid" in m) == ("catalogue" in m):
        node.fail("give either 'vid' (with optional 'pid', 'serial') or 'catalogue'")
    if "catalogue" in m:
        name = m["catalogue"].choice(tuple(CATALOGUES))
        return UsbConfig(catalogue=name, vendor_ids=load_catalogue(name))
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


def list_devices(platform=None) -> list[UsbDevice]:
    """The attached USB devices as the platform layer lists them (the running OS's when none is given);
    raises FactUnavailable naming the query when they cannot be listed."""
    if platform is None:
        from agent.platform import current

        platform = current()
    return read_fact(platform, "usb_devices")


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


def probe(device: DeviceConfig, cfg: UsbConfig, ctx: ProbeContext) -> MethodResult:
    devices = ctx.usb_devices()
    if isinstance(devices, Exception):
        return cannot("usb", f"无法读取 USB 设备列表：{devices}", error=str(devices),
                      query=getattr(devices, "query", ""))
    found = [d for d in devices if matches(cfg, d)]
    wanted = describe(cfg)
    if not found:
        return MethodResult("usb", False, "fail", f"未检测到{wanted}（未连接或未通电）",
                            {"wanted": wanted, "usb_devices_seen": len(devices)})
    details = {"matched": [{"vid": d.vid, "pid": d.pid, "serial": d.serial, "product": d.product,
                            "manufacturer": d.manufacturer, "where": d.bus_path} for d in found]}
    good = [d for d in found if d.error_code == 0]
    name = found[0].product or f"{found[0].vid}:{found[0].pid}"
    if not good and all(d.error_code is None for d in found):
        return warn("usb", f"{name} 已连接，但未能读取其工作状态（Windows 设备管理器状态不可用，仅从注册表看到设备已连接）",
                    **details, error_code=None)
    if not good:
        found = [d for d in found if d.error_code is not None]
        return broken("usb", f"{name} 已连接但工作不正常（设备管理器错误代码 {found[0].error_code}）",
                      **details, error_code=found[0].error_code)
    return ok("usb", f"已连接：{good[0].product or name}", **details)
