"""Windows facts from the registry: the fallbacks for when PowerShell/WMI does not answer.

A broken WMI repository (a known Windows failure) or a PowerShell blocked by policy, and Wine's stub
powershell.exe, leave WMI silent; the registry is read through ``winreg`` (no process, nothing localized
parsed as a label) and what it can tell is turned into the same rows the WMI parsers take, so one parser
judges both. :class:`Registry` is the small reading interface; :class:`RecordedRegistry` holds recorded keys
for the tests, :class:`WinRegistry` reads the running PC's.

What the registry cannot tell is never made up: a print queue's live state, a fixed USB disk's drive letter
without MountedDevices, an adapter's kind without its class key. The callers raise on those.
"""

from __future__ import annotations

import re

HKLM_CONTROL = r"SYSTEM\CurrentControlSet\Control"
PRINTERS_KEY = HKLM_CONTROL + r"\Print\Printers"
USB_ENUM_KEY = r"SYSTEM\CurrentControlSet\Enum\USB"
CRYPTOGRAPHY_KEY = r"SOFTWARE\Microsoft\Cryptography"
NET_CLASS_GUID = "{4D36E972-E325-11CE-BFC1-08002BE10318}"  # the network adapter device class
NET_CLASS_KEY = HKLM_CONTROL + "\\Class\\" + NET_CLASS_GUID
NET_CONNECTIONS_KEY = HKLM_CONTROL + "\\Network\\" + NET_CLASS_GUID
TCPIP_INTERFACES_KEY = r"SYSTEM\CurrentControlSet\Services\Tcpip\Parameters\Interfaces"
MOUNTED_DEVICES_KEY = r"SYSTEM\MountedDevices"
BIOS_KEY = r"HARDWARE\DESCRIPTION\System\BIOS"
PRINTER_ATTRIBUTE_WORK_OFFLINE = 0x400
NCF_PHYSICAL = 0x4


class Registry:
    """Reads HKLM: ``values(path)`` -> {name: data} and ``subkeys(path)`` -> names; OSError when absent."""

    def values(self, path: str) -> dict:
        raise NotImplementedError

    def subkeys(self, path: str) -> list[str]:
        raise NotImplementedError

    def value(self, path: str, name: str, default=None):
        try:
            return self.values(path).get(name, default)
        except OSError:
            return default


class RecordedRegistry(Registry):
    """{key path: {value name: data}}; a key's subkeys are the recorded paths one level below it."""

    def __init__(self, keys: dict[str, dict]):
        self.keys = {k.lower(): v for k, v in keys.items()}
        self.names = {k.lower(): k for k in keys}

    def values(self, path: str) -> dict:
        if path.lower() not in self.keys and not self.subkeys_or_none(path):
            raise FileNotFoundError(2, "The system cannot find the file specified", path)
        return dict(self.keys.get(path.lower(), {}))

    def subkeys_or_none(self, path: str) -> list[str]:
        prefix = path.lower() + "\\"
        return sorted({self.names[k][len(prefix):].split("\\", 1)[0] for k in self.keys if k.startswith(prefix)})

    def subkeys(self, path: str) -> list[str]:
        found = self.subkeys_or_none(path)
        if not found and path.lower() not in self.keys:
            raise FileNotFoundError(2, "The system cannot find the file specified", path)
        return found


class WinRegistry(Registry):  # pragma: no cover - needs Windows (tests/test_windows_agent.py runs it under Wine)
    def _open(self, path: str):
        try:
            import winreg
        except ImportError as exc:  # not Windows: no registry is a source that is missing
            raise OSError(f"no Windows registry here ({exc})") from exc
        return winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, path, 0, winreg.KEY_READ | winreg.KEY_WOW64_64KEY)

    def values(self, path: str) -> dict:
        out = {}
        with self._open(path) as key:
            import winreg

            i = 0
            while True:
                try:
                    name, data, _kind = winreg.EnumValue(key, i)
                except OSError:
                    return out
                out[name] = data
                i += 1

    def subkeys(self, path: str) -> list[str]:
        out = []
        with self._open(path) as key:
            import winreg

            i = 0
            while True:
                try:
                    out.append(winreg.EnumKey(key, i))
                except OSError:
                    return out
                i += 1


def _indirect(text) -> str:
    """'@usb.inf,%usb.devicedesc%;USB Composite Device' -> 'USB Composite Device' (the text after ';')."""
    text = "" if text is None else str(text)
    return text.rsplit(";", 1)[-1].strip() if text.startswith("@") else text.strip()


# -- machine id ------------------------------------------------------------------------------------------


def machine_guid(reg: Registry) -> str:
    value = reg.values(CRYPTOGRAPHY_KEY).get("MachineGuid")
    return str(value).strip() if value else ""


def bios_facts(reg: Registry) -> dict[str, str]:
    """HKLM\\HARDWARE\\DESCRIPTION\\System\\BIOS: vendor and product names (no serial, no UUID)."""
    v = reg.values(BIOS_KEY)
    pairs = (("SystemProductName", "product_name"), ("BIOSVendor", "bios_vendor"),
             ("BaseBoardProduct", "board_product"))
    return {key: str(v[name]).strip() for name, key in pairs if str(v.get(name) or "").strip()}


# -- USB -------------------------------------------------------------------------------------------------


def usb_rows(reg: Registry) -> list[dict]:
    """Win32_PnPEntity-like rows of the USB devices present now.

    Enum\\USB keeps every device ever plugged in; only a present one has the volatile ``Control`` subkey,
    so that is what "attached" means here. Whether its driver works is not there: ``ConfigManagerErrorCode``
    is None (unknown), never a 0 that was not seen.
    """
    rows = []
    for device_id in reg.subkeys(USB_ENUM_KEY):
        base = f"{USB_ENUM_KEY}\\{device_id}"
        for instance in reg.subkeys(base):
            key = f"{base}\\{instance}"
            try:
                if "Control" not in reg.subkeys(key):
                    continue
            except OSError:
                continue
            v = reg.values(key)
            rows.append({"PNPDeviceID": f"USB\\{device_id}\\{instance}", "Name": _indirect(v.get("DeviceDesc")),
                         "Manufacturer": _indirect(v.get("Mfg")), "Service": v.get("Service") or "",
                         "ConfigManagerErrorCode": None})  # not in the registry: working or not is unknown
    return rows


# -- printers --------------------------------------------------------------------------------------------


def printer_rows(reg: Registry) -> list[dict]:
    """Win32_Printer-like rows of the installed print queues. The registry holds no live state, so the
    status fields stay None: a queue listed here is not a printer seen working (localprinter says so)."""
    rows = []
    for name in reg.subkeys(PRINTERS_KEY):
        v = reg.values(f"{PRINTERS_KEY}\\{name}")
        attributes = int(v.get("Attributes") or 0)
        rows.append({"Name": v.get("Name") or name, "PortName": v.get("Port") or "",
                     "DriverName": v.get("Printer Driver") or "", "PrinterStatus": None,
                     "DetectedErrorState": None,
                     "WorkOffline": bool(attributes & PRINTER_ATTRIBUTE_WORK_OFFLINE)})
    return rows


# -- network adapters ------------------------------------------------------------------------------------


def adapter_classes(reg: Registry) -> dict[str, dict]:
    """Connection name -> the Win32_NetworkAdapter- and MSFT_NetAdapter-like facts of its class key:
    the driver's description, PnP id, IANA ifType and physical medium, which is what tells wireless or
    cellular from Ethernet without WMI."""
    out = {}
    for sub in reg.subkeys(NET_CLASS_KEY):
        if not re.fullmatch(r"\d{4}", sub):
            continue
        v = reg.values(f"{NET_CLASS_KEY}\\{sub}")
        guid = str(v.get("NetCfgInstanceId") or "")
        if not guid:
            continue
        name = reg.value(f"{NET_CONNECTIONS_KEY}\\{guid}\\Connection", "Name")
        if not name:
            continue
        characteristics = int(v.get("Characteristics") or 0)
        out[str(name)] = {
            "row": {"NetConnectionID": str(name), "Name": _indirect(v.get("DriverDesc")), "GUID": guid,
                    "PNPDeviceID": str(v.get("DeviceInstanceID") or v.get("MatchingDeviceId") or ""),
                    "ServiceName": str(v.get("Service") or ""), "PhysicalAdapter": bool(characteristics & NCF_PHYSICAL)},
            "msft": {"InterfaceGuid": guid, "InterfaceType": v.get("*IfType"),
                     "NdisPhysicalMedium": v.get("*PhysicalMediaType")},
        }
    return out


def default_gateways(reg: Registry) -> dict[str, list[str]]:
    """Interface GUID (lowercase) -> its IPv4 default gateways (static, else the DHCP lease's)."""
    out = {}
    for guid in reg.subkeys(TCPIP_INTERFACES_KEY):
        v = reg.values(f"{TCPIP_INTERFACES_KEY}\\{guid}")
        gws = [g for g in _multi(v.get("DefaultGateway")) if g and g != "0.0.0.0"]
        if not gws and int(v.get("EnableDHCP") or 0):
            gws = [g for g in _multi(v.get("DhcpDefaultGateway")) if g and g != "0.0.0.0"]
        out[guid.lower()] = gws
    return out


def _multi(value) -> list[str]:
    if value is None:
        return []
    return [str(x).strip() for x in (value if isinstance(value, (list, tuple)) else [value])]


# -- removable storage -----------------------------------------------------------------------------------


def mounted_device(reg: Registry, letter: str) -> str:
    """MountedDevices' ``\\DosDevices\\E:``: the device path a drive letter was given to ("" when it is a
    disk signature, i.e. a fixed disk, or unknown). Stored as UTF-16 text for USB disks."""
    data = reg.value(MOUNTED_DEVICES_KEY, f"\\DosDevices\\{letter.upper()}")
    if isinstance(data, bytes) and data[:8] == "\\??\\".encode("utf-16-le"):
        return data.decode("utf-16-le", "replace").rstrip("\x00")
    return data if isinstance(data, str) else ""
