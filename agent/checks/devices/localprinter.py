"""The terminal's own print queue: Win32_Printer on Windows, the local cupsd on Linux.

Windows facts come from ``Win32_Printer`` through :mod:`agent.platform.wmi` (never from localised command
text); :func:`evaluate_windows` is pure and its tests feed recorded JSON. A USB printer that is unplugged
or switched off still reads "idle" in the spooler (pywin32#662), so a queue on a ``USB…`` port is
cross-checked against the attached USB printers.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from agent.checks import FactUnavailable, read_fact
from agent.checks.devices import cups
from agent.checks.devices.common import DeviceConfig, MethodResult, ProbeContext, broken, cannot, ok, warn
from agent.confignode import Node

PRINTER_STATUS = {1: "other", 2: "unknown", 3: "idle", 4: "printing", 5: "warmup", 6: "stopped", 7: "offline"}
# Win32_Printer.DetectedErrorState
ERROR_STATE = {0: "unknown", 1: "other", 2: "noError", 3: "lowPaper", 4: "noPaper", 5: "lowToner",
               6: "noToner", 7: "doorOpen", 8: "jammed", 9: "offline", 10: "serviceRequested",
               11: "outputBinFull"}
ERROR_ZH = {"lowPaper": "纸张不足", "noPaper": "缺纸", "lowToner": "墨粉不足", "noToner": "墨粉耗尽",
            "doorOpen": "机盖打开", "jammed": "卡纸", "offline": "脱机", "serviceRequested": "需要维修",
            "outputBinFull": "出纸盒已满"}
FAILING = {"noToner", "jammed", "offline"}
USB_PRINTER_CLASS = 0x07


@dataclass
class LocalPrinterConfig:
    name: str


def parse(node: Node, device: DeviceConfig) -> LocalPrinterConfig:
    """``local_printer: NAME``: the Windows printer name, or the CUPS queue name on Linux."""
    return LocalPrinterConfig(node.str().strip())


def find_printer(rows, name: str) -> dict | None:
    rows = [rows] if isinstance(rows, dict) else (rows or [])
    for row in rows:
        if str(row.get("Name", "")).casefold() == name.casefold():
            return row
    return None


def _int(value, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _flag(value) -> bool:
    """WorkOffline: true/false from JSON, "True"/"False" from the CSV route (PowerShell 2.0)."""
    return value.strip().lower() == "true" if isinstance(value, str) else bool(value)


def evaluate_windows(row: dict | None, name: str, usb_devices) -> MethodResult:
    """Judge one Win32_Printer row (``None``: no such printer installed)."""
    if row is None:
        return MethodResult("local_printer", False, "fail", f"本机未安装打印机“{name}”", {"name": name})
    status = PRINTER_STATUS.get(_int(row.get("PrinterStatus"), 2), "unknown")
    error = ERROR_STATE.get(_int(row.get("DetectedErrorState"), 0), "unknown")
    offline = _flag(row.get("WorkOffline"))
    port = str(row.get("PortName") or "")
    details = {"name": row.get("Name"), "printer_status": status, "detected_error": error, "port": port,
               "work_offline": offline, "driver": row.get("DriverName")}
    if port.upper().startswith("USB"):
        if isinstance(usb_devices, Exception):
            details["usb_check"] = f"unavailable: {usb_devices}"
        elif not any(USB_PRINTER_CLASS in d.interface_classes for d in usb_devices):
            details["usb_check"] = "missing"
            return MethodResult("local_printer", False, "fail",
                                f"打印机“{name}”的 USB 连接未检测到（未连接或未通电）", details)
        else:
            details["usb_check"] = "present"
    if row.get("PrinterStatus") is None and row.get("DetectedErrorState") is None:
        # A queue from the registry (WMI did not answer): it holds no live state. Only a USB printer seen
        # attached is a printer seen; a queue alone says nothing about the device.
        if details.get("usb_check") == "present":
            return warn("local_printer", f"打印机“{name}”已连接（USB），WMI 未应答，未能读取其工作状态", **details)
        return cannot("local_printer", f"打印机“{name}”的状态无法读取：WMI 未应答，注册表只记录打印队列", **details)
    if offline or status == "offline" or error == "offline":
        return broken("local_printer", f"打印机“{name}”脱机", **details)
    if error in FAILING or status == "stopped":
        return broken("local_printer", f"打印机“{name}”故障：{ERROR_ZH.get(error, '已停止打印')}", **details)
    if error in ERROR_ZH:
        return warn("local_printer", f"打印机“{name}”需要注意：{ERROR_ZH[error]}", **details)
    label = {"idle": "空闲", "printing": "正在打印", "warmup": "预热中"}.get(status, "状态未知")
    return ok("local_printer", f"打印机“{name}”{label}", **details)


def probe(device: DeviceConfig, cfg: LocalPrinterConfig, ctx: ProbeContext) -> MethodResult:
    if sys.platform == "win32":
        platform = ctx.platform
        if platform is None:
            from agent.platform import current

            platform = current()
        try:
            # Win32_Printer (the registry's print queues when WMI does not answer); "[]" is no printer.
            rows = read_fact(platform, "printers")
        except FactUnavailable as exc:
            return cannot("local_printer", f"无法读取本机打印机列表（{exc.query}）：{exc.reason}", error=exc.reason,
                          query=exc.query)
        result = evaluate_windows(find_printer(rows, cfg.name), cfg.name, ctx.usb_devices())
        result.details["source"] = platform.fact_source("printers")
        return result
    result = cups.probe(device, cups.CupsConfig(f"ipp://localhost:631/printers/{cfg.name}"), ctx)
    result.method = "local_printer"
    return result
