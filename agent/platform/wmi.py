"""WMI through Windows PowerShell, and the pure parsers that turn its output into platform facts.

Why PowerShell and not ``wmic``: wmic is removed from new Windows 11 installs, and its table text is
localized on the Chinese Windows these PCs run. ``Get-WmiObject`` exists from PowerShell 2.0 (Windows 7)
to 5.1; its objects are serialised as JSON by ``ConvertTo-Json`` (PowerShell 3.0+) or, on a bare
Windows 7 with PowerShell 2.0, as CSV by ``ConvertTo-Csv``. Property names are English in both, and values
are data, so nothing localized is ever parsed as a label. The parsers below are what the tests feed with
recorded outputs; the runner is the only part that needs Windows.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import subprocess
from typing import Any

from agent.platform import UsbDevice

# Force UTF-8 on stdout (the console default on Chinese Windows is code page 936) and pick the serialiser.
_PRELUDE = (
    "$ErrorActionPreference='Stop';"
    "[Console]::OutputEncoding=[System.Text.Encoding]::UTF8;"
    "function Out-Data($o){ if (Get-Command ConvertTo-Json -ErrorAction SilentlyContinue)"
    " { ConvertTo-Json -InputObject @($o) -Compress -Depth 3 } else { $o | ConvertTo-Csv -NoTypeInformation } };"
)


class WmiError(RuntimeError):
    pass


def wmi_query_script(cls: str, properties: list[str], where: str | None = None) -> str:
    """The PowerShell text for one WMI class query, selecting only the named properties."""
    filt = f" -Filter \"{where}\"" if where else ""
    return f"Out-Data (Get-WmiObject -Class {cls}{filt} | Select-Object {','.join(properties)})"


def run_powershell(script: str, timeout: float = 20.0) -> str:
    """Run a script in Windows PowerShell, passed as -EncodedCommand so no quoting can break it."""
    encoded = base64.b64encode((_PRELUDE + script).encode("utf-16-le")).decode("ascii")
    creationflags = getattr(subprocess, "CREATE_NO_WINDOW", 0)  # no console window flashing on the desk
    try:
        proc = subprocess.run(
            ["powershell.exe", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass",
             "-EncodedCommand", encoded],
            capture_output=True, timeout=timeout, creationflags=creationflags, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WmiError(f"powershell: {exc}") from exc
    if proc.returncode != 0:
        raise WmiError(f"powershell exit {proc.returncode}: "
                       f"{proc.stderr.decode('utf-8', 'replace').strip()[:300]}")
    return proc.stdout.decode("utf-8", "replace")


def wmi_query(cls: str, properties: list[str], where: str | None = None, timeout: float = 20.0) -> list[dict]:
    return parse_records(run_powershell(wmi_query_script(cls, properties, where), timeout))


def parse_records(text: str) -> list[dict[str, Any]]:
    """Rows from ConvertTo-Json (an array, a lone object, or nothing) or from ConvertTo-Csv."""
    text = text.lstrip("\ufeff").strip()
    if not text:
        return []
    if text[0] in "[{":
        data = json.loads(text)
        if isinstance(data, dict):
            return [data]
        return [row for row in data if isinstance(row, dict)]
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        # ConvertTo-Csv writes every value as text and a missing value as ""; JSON would have null.
        rows.append({k: (v if v != "" else None) for k, v in row.items()})
    return rows


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


# -- USB -------------------------------------------------------------------------------------------

USB_PROPERTIES = ["PNPDeviceID", "Name", "Manufacturer", "Service", "ConfigManagerErrorCode"]
# WQL string literals escape the backslash, so 'USB\\%' matches IDs that start with USB\ .
USB_WHERE = "PNPDeviceID LIKE 'USB\\\\%'"

_USB_ID = re.compile(r"^USB\\VID_([0-9A-F]{4})&PID_([0-9A-F]{4})(&[^\\]*)?\\(.*)$", re.IGNORECASE)
# Driver service -> USB class code, so the device checks can tell a storage stick from a printer.
_SERVICE_CLASS = {"usbstor": "08", "uaspstor": "08", "usbprint": "07", "usbvideo": "0e", "hidusb": "03",
                  "usbccgp": "", "winusb": "ff", "wudfrd": "ff"}


def parse_usb_entities(rows: list[dict]) -> list[UsbDevice]:
    """Win32_PnPEntity rows whose PNPDeviceID starts with USB\\ -> devices (interfaces MI_xx skipped).

    ``USB\\VID_04C5&PID_1234\\SERIAL``: the last part is the device's iSerialNumber when the device has
    one; Windows makes up an instance id containing '&' (``5&2B3C1D&0&3``) when it does not.
    """
    devices = []
    for row in rows:
        pnp = _text(row.get("PNPDeviceID"))
        m = _USB_ID.match(pnp)
        if not m:
            continue
        vid, pid, extra, instance = m.groups()
        if extra and "MI_" in extra.upper():
            continue  # one interface of a composite device; the parent entry is the device
        serial = "" if "&" in instance else instance
        cls = _SERVICE_CLASS.get(_text(row.get("Service")).lower(), "")
        devices.append(UsbDevice(
            vid=vid.lower(), pid=pid.lower(), serial=serial, product=_text(row.get("Name")),
            manufacturer=_text(row.get("Manufacturer")), bus_path=pnp, classes=(cls,) if cls else (),
            working=_int(row.get("ConfigManagerErrorCode")) == 0))
    return devices
