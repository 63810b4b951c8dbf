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

from agent.platform.facts import Adapter, Route, StorageVolume, UsbDevice

# Force UTF-8 on stdout (the console default on Chinese Windows is code page 936) and pick the serialiser.
_PRELUDE = (
    "$ErrorActionPreference='Stop';"
    "[Console]::OutputEncoding=[System.Text.Encoding]::UTF8;"
    "function Out-Data($o){ if (Get-Command ConvertTo-Json -ErrorAction SilentlyContinue)"
    " { ConvertTo-Json -InputObject @($o) -Compress -Depth 3 } else { $o | ConvertTo-Csv -NoTypeInformation } };"
)


class WmiError(RuntimeError):
    pass


def wmi_query_script(cls: str, properties: list[str], where: str | None = None, namespace: str | None = None) -> str:
    """The PowerShell text for one WMI class query, selecting only the named properties."""
    filt = f" -Filter \"{where}\"" if where else ""
    ns = f" -Namespace {namespace}" if namespace else ""
    return f"Out-Data (Get-WmiObject{ns} -Class {cls}{filt} | Select-Object {','.join(properties)})"


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
    out = proc.stdout.decode("utf-8", "replace")
    if not out.strip():
        # Out-Data always prints something ("[]" for no rows), so silence is a PowerShell that did not run
        # the script: Wine's stub powershell.exe, a broken WMI repository, a policy that blocks it.
        raise WmiError(f"powershell printed nothing (exit 0){_stderr_hint(proc.stderr)}")
    return out


def _stderr_hint(stderr: bytes) -> str:
    text = stderr.decode("utf-8", "replace").strip()[:200]
    return f": {text}" if text else ""


def run_records(script: str, timeout: float = 20.0) -> list[dict]:
    """Run a script that ends in Out-Data and return its rows: what WindowsPlatform calls for every fact."""
    try:
        return parse_records(run_powershell(script, timeout))
    except WmiError as exc:
        raise WmiError(f"{query_name(script)}: {exc}") from exc


def query_name(script: str) -> str:
    """The WMI classes a script queries ("Win32_PnPEntity"), so an error names what could not be read."""
    return "+".join(dict.fromkeys(re.findall(r"-Class (\w+)", script))) or "PowerShell"


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


def _bool(value: Any) -> bool | None:
    """JSON gives true/false; the CSV route gives "True"/"False"; a missing value stays None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _error_code(value: Any) -> int | None:
    """ConfigManagerErrorCode; None when it was not given (unknown: never taken for a working 0)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# -- USB -------------------------------------------------------------------------------------------

USB_PROPERTIES = ["PNPDeviceID", "Name", "Manufacturer", "Service", "ConfigManagerErrorCode"]
# WQL string literals escape the backslash, so 'USB\\%' matches IDs that start with USB\ .
USB_WHERE = "PNPDeviceID LIKE 'USB\\\\%'"
USB_QUERY = wmi_query_script("Win32_PnPEntity", USB_PROPERTIES, USB_WHERE)

_USB_ID = re.compile(r"^USB\\VID_([0-9A-F]{4})&PID_([0-9A-F]{4})(&[^\\]*)?\\(.*)$", re.IGNORECASE)
# Driver service -> USB class code, so the device checks can tell a storage stick from a printer.
_SERVICE_CLASS = {"usbstor": 0x08, "uaspstor": 0x08, "usbprint": 0x07, "usbvideo": 0x0E, "hidusb": 0x03,
                  "winusb": 0xFF, "wudfrd": 0xFF}
# PNPClass (the Device Manager category, Windows 10 and later) -> USB class code, for rows that carry it
# (Get-CimInstance output) and whose driver service says nothing.
_PNP_CLASS = {"printer": 0x07, "keyboard": 0x03, "mouse": 0x03, "hidclass": 0x03, "diskdrive": 0x08,
              "usb": 0x09, "image": 0xFF, "wpd": 0x06}


def _usb_class(row: dict) -> int | None:
    service = _text(row.get("Service")).lower()
    if service == "usbccgp":
        return None  # a composite device: its class is that of its interfaces, whatever its PNPClass says
    cls = _SERVICE_CLASS.get(service)
    return cls if cls is not None else _PNP_CLASS.get(_text(row.get("PNPClass")).lower())


def parse_usb_entities(rows: list[dict]) -> list[UsbDevice]:
    """Win32_PnPEntity rows whose PNPDeviceID starts with USB\\ -> devices.

    ``USB\\VID_04C5&PID_1234\\SERIAL``: the last part is the device's iSerialNumber when the device has
    one; Windows makes up an instance id containing '&' (``5&2B3C1D&0&3``) when it does not. Entries with
    ``&MI_xx`` are interfaces of a composite device: not devices themselves, they lend it their classes.
    """
    found: list[tuple[dict, str, str, str, str]] = []
    interfaces: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        pnp = _text(row.get("PNPDeviceID"))
        m = _USB_ID.match(pnp)
        if not m:
            continue
        vid, pid, extra, instance = m.groups()
        vid, pid = vid.lower(), pid.lower()
        if extra and "MI_" in extra.upper():
            cls = _usb_class(row)
            if cls is not None:
                interfaces.setdefault((vid, pid), []).append(cls)
            continue
        found.append((row, pnp, vid, pid, "" if "&" in instance else instance))
    devices = []
    for row, pnp, vid, pid, serial in found:
        own = _usb_class(row)
        classes = tuple(interfaces.get((vid, pid), ())) or ((own,) if own is not None else ())
        devices.append(UsbDevice(
            vid=vid, pid=pid, serial=serial, product=_text(row.get("Name")),
            manufacturer=_text(row.get("Manufacturer")), bus_path=pnp, interface_classes=classes,
            error_code=_error_code(row.get("ConfigManagerErrorCode"))))
    return devices


# -- printers --------------------------------------------------------------------------------------------

PRINTER_PROPERTIES = ["Name", "PrinterStatus", "WorkOffline", "DetectedErrorState", "ExtendedPrinterStatus",
                      "PortName", "DriverName"]
PRINTER_QUERY = wmi_query_script("Win32_Printer", PRINTER_PROPERTIES)


# -- identity --------------------------------------------------------------------------------------

PRODUCT_QUERY = wmi_query_script("Win32_ComputerSystemProduct", ["UUID", "IdentifyingNumber", "Name", "Vendor"])
BIOS_QUERY = wmi_query_script("Win32_BIOS", ["SerialNumber", "Manufacturer", "SMBIOSBIOSVersion"])
BOARD_QUERY = wmi_query_script("Win32_BaseBoard", ["SerialNumber", "Product", "Manufacturer"])


def parse_hardware_ids(product: list[dict], bios: list[dict], board: list[dict]) -> dict[str, str]:
    """SMBIOS facts under the same keys the Linux platform uses (placeholders are kept and flagged later)."""
    ids: dict[str, str] = {}
    pairs = [(product, "UUID", "system_uuid"), (product, "IdentifyingNumber", "system_serial"),
             (product, "Name", "product_name"), (bios, "SerialNumber", "bios_serial"),
             (bios, "Manufacturer", "bios_vendor"), (board, "SerialNumber", "board_serial"),
             (board, "Product", "board_product")]
    for rows, prop, key in pairs:
        value = _text(rows[0].get(prop)) if rows else ""
        if value:
            ids[key] = value
    return ids


# -- network adapters ------------------------------------------------------------------------------

ADAPTER_QUERY = wmi_query_script(
    "Win32_NetworkAdapter",
    ["NetConnectionID", "Name", "AdapterTypeId", "NetEnabled", "NetConnectionStatus", "PhysicalAdapter",
     "MACAddress", "PNPDeviceID", "ServiceName", "GUID", "InterfaceIndex"],
    "NetConnectionID IS NOT NULL")
# Windows 8 and later only; on Windows 7 the query fails and the Win32_NetworkAdapter facts stand alone.
MSFT_ADAPTER_QUERY = wmi_query_script(
    "MSFT_NetAdapter", ["Name", "InterfaceGuid", "NdisPhysicalMedium", "InterfaceType", "InterfaceDescription",
                        "HardwareInterface", "Virtual"], namespace="root/StandardCimv2")

# NDIS_PHYSICAL_MEDIUM (ntddndis.h) and IANA ifType values that decide an adapter's kind.
NDIS_MEDIUM_KIND = {1: "wireless", 9: "wireless", 8: "cellular", 12: "cellular", 10: "cellular"}
IF_TYPE_KIND = {71: "wireless", 243: "cellular", 244: "cellular", 131: "tunnel", 23: "tunnel", 24: "loopback"}
# Driver service names and description words (driver-provided English text, not localized by Windows).
SERVICE_KIND = {"rndismp": "cellular", "rndismp6": "cellular", "wwanpro": "cellular", "netwtw": "wireless",
                "tap0901": "tunnel", "tapwindows6": "tunnel", "wintun": "tunnel", "wireguard": "tunnel",
                "ovpn-dco": "tunnel", "rasl2tp": "tunnel", "raspptp": "tunnel", "rassstp": "tunnel",
                "rasagilevpn": "tunnel"}
DESCRIPTION_WORDS = [
    ("wireless", ("wireless", "wi-fi", "wifi", "wlan", "802.11", "无线")),
    ("cellular", ("mobile broadband", "wwan", "remote ndis", "apple mobile device ethernet", "lte", "4g", "5g",
                  "移动宽带", "bluetooth")),
    ("tunnel", ("tap-windows", "wireguard", "wintun", "openvpn", "vpn", "tunnel", "sstp", "l2tp", "pptp",
                "fortinet", "sangfor", "easyconnect", "zerotier", "tailscale")),
]
CONNECTED_STATUSES = {2, 9}  # NetConnectionStatus: Connected, Authentication succeeded


def classify_adapter(row: dict, msft: dict | None) -> tuple[str, str]:
    description = _text(row.get("Name")) or _text((msft or {}).get("InterfaceDescription"))
    if msft:
        kind = NDIS_MEDIUM_KIND.get(_int(msft.get("NdisPhysicalMedium"), -1)) or \
            IF_TYPE_KIND.get(_int(msft.get("InterfaceType"), -1))
        if kind:
            return kind, description
    if _int(row.get("AdapterTypeId"), -1) == 9:
        return "wireless", description
    service = _text(row.get("ServiceName")).lower()
    for prefix, kind in SERVICE_KIND.items():
        if service.startswith(prefix):
            return kind, description
    low = description.lower()
    for kind, words in DESCRIPTION_WORDS:
        # Whole words only: "Realtek" must not read as "LTE".
        if any(re.search(rf"(?<![a-z0-9]){re.escape(w)}(?![a-z0-9])", low) for w in words):
            return kind, description
    pnp = _text(row.get("PNPDeviceID")).upper()
    if _bool(row.get("PhysicalAdapter")) is False or pnp.startswith(("ROOT\\", "SWD\\")) or \
            (msft and _bool(msft.get("Virtual")) is True):
        return "virtual", description
    return "ethernet", description


def parse_adapters(rows: list[dict], msft_rows: list[dict], addresses: dict[str, list[str]]) -> list[Adapter]:
    """Win32_NetworkAdapter rows (+ MSFT_NetAdapter by GUID) and psutil addresses keyed by connection name."""
    by_guid = {_text(m.get("InterfaceGuid")).lower(): m for m in msft_rows if m.get("InterfaceGuid")}
    out = []
    for row in rows:
        name = _text(row.get("NetConnectionID"))
        if not name:
            continue
        msft = by_guid.get(_text(row.get("GUID")).lower())
        kind, description = classify_adapter(row, msft)
        enabled = _bool(row.get("NetEnabled")) is True
        up = enabled and _int(row.get("NetConnectionStatus"), -1) in CONNECTED_STATUSES
        pnp = _text(row.get("PNPDeviceID")).upper()
        out.append(Adapter(name=name, kind=kind, up=up, addresses=tuple(addresses.get(name, [])),
                           mac=_text(row.get("MACAddress")).lower().replace("-", ":"), description=description,
                           physical=kind in ("ethernet", "wireless", "cellular") and pnp.startswith(("PCI\\", "USB\\"))))
    return out


def physical_macs(rows: list[dict]) -> list[str]:
    """MACs of adapters on the PCI bus: USB adapters and phones come and go, so they are not identity."""
    macs = set()
    for row in rows:
        if _text(row.get("PNPDeviceID")).upper().startswith("PCI\\") and row.get("MACAddress"):
            kind, _ = classify_adapter(row, None)
            if kind in ("ethernet", "wireless"):
                macs.add(_text(row["MACAddress"]).lower().replace("-", ":"))
    return sorted(macs)


# -- routes ----------------------------------------------------------------------------------------

ROUTE_QUERY = wmi_query_script("Win32_IP4RouteTable", ["Destination", "Mask", "NextHop", "InterfaceIndex", "Metric1"])


def parse_routes(rows: list[dict], adapter_rows: list[dict]) -> list[Route]:
    import ipaddress

    names = {_int(a.get("InterfaceIndex"), -1): _text(a.get("NetConnectionID")) for a in adapter_rows}
    routes = []
    for row in rows:
        try:
            net = ipaddress.ip_network(f"{_text(row.get('Destination'))}/{_text(row.get('Mask'))}", strict=False)
        except ValueError:
            continue
        index = _int(row.get("InterfaceIndex"), -1)
        if net.is_loopback or (index == 1 and not names.get(1)):
            continue  # the software loopback interface
        hop = _text(row.get("NextHop"))
        routes.append(Route(str(net), "" if hop in ("", "0.0.0.0") else hop, names.get(index) or f"ifindex {index}",
                            _int(row.get("Metric1"))))
    return routes


# -- removable storage -----------------------------------------------------------------------------

# One row per (disk, logical drive). GetRelated walks Win32_DiskDrive -> partition -> logical disk, which
# psutil cannot do; it is how a USB hard disk that Windows calls a *fixed* drive is told apart.
DISK_VOLUMES_SCRIPT = (
    "$out=@(); foreach($d in Get-WmiObject -Class Win32_DiskDrive){"
    " foreach($p in $d.GetRelated('Win32_DiskPartition')){ foreach($l in $p.GetRelated('Win32_LogicalDisk')){"
    " $out += New-Object PSObject -Property @{Disk=$d.DeviceID; InterfaceType=$d.InterfaceType;"
    " PNPDeviceID=$d.PNPDeviceID; SerialNumber=$d.SerialNumber; Model=$d.Model; MediaType=$d.MediaType;"
    " Size=$d.Size; Drive=$l.DeviceID; DriveType=$l.DriveType; FileSystem=$l.FileSystem} } } };"
    " Out-Data $out")


def usb_serial_from_pnp(pnp: str) -> str:
    """``USBSTOR\\DISK&VEN_X&PROD_Y&REV_Z\\<serial>&0`` -> <serial>; "" when Windows made the id up."""
    parts = pnp.split("\\")
    if len(parts) < 3:
        return ""
    instance = parts[-1]
    head, sep, lun = instance.rpartition("&")
    if sep and lun.isdigit() and head:
        instance = head
    # Generated ids look like 7&2A3B4C5D&0 (a digit then '&'): the device reported no serial.
    return "" if re.match(r"^\d&", instance) else instance


def parse_disk_volumes(rows: list[dict]) -> list[StorageVolume]:
    out = []
    for row in rows:
        pnp = _text(row.get("PNPDeviceID"))
        iface = _text(row.get("InterfaceType")).upper()
        drive_type = _int(row.get("DriveType"), 0)
        if iface == "USB" or pnp.upper().startswith("USBSTOR\\"):
            bus = "usb"
        elif "SD\\" in pnp.upper() or pnp.upper().startswith("SCSI\\DISK&VEN_SD"):
            bus = "mmc"
        elif drive_type == 2 or "removable" in _text(row.get("MediaType")).lower():
            bus = "removable"
        else:
            continue
        serial = usb_serial_from_pnp(pnp) if pnp.upper().startswith("USBSTOR\\") else ""
        out.append(StorageVolume(
            mountpoint=_text(row.get("Drive")) + "\\", device=_text(row.get("Disk")), bus=bus,
            serial=serial or _text(row.get("SerialNumber")), model=_text(row.get("Model")),
            size_bytes=_int(row.get("Size"), 0) or None,
            details={"pnp_device_id": pnp, "interface_type": iface, "drive_type": drive_type,
                     "disk_serial": _text(row.get("SerialNumber")), "fstype": _text(row.get("FileSystem"))}))
    return out
