"""Windows facts through the registry, WMI and psutil, never localized command output.

The WMI calls and their parsers live in :mod:`agent.platform.wmi`; this class only wires them together,
so the tests can feed recorded PowerShell output through exactly the code that runs on a point's PC.
"""

from __future__ import annotations

import os

from agent.platform import Platform, UsbDevice, wmi


class WindowsPlatform(Platform):
    name = "windows"

    def __init__(self, query=wmi.wmi_query):
        # `query(cls, properties, where)` -> rows; tests pass one that returns recorded rows.
        self._query = query

    def system_disk(self) -> str:
        return os.environ.get("SystemDrive", "C:") + "\\"

    def machine_id(self) -> str:
        import winreg

        # KEY_WOW64_64KEY: a 32-bit agent on 64-bit Windows would otherwise read the WOW6432Node view.
        access = winreg.KEY_READ | winreg.KEY_WOW64_64KEY
        try:
            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"SOFTWARE\Microsoft\Cryptography", 0, access) as key:
                return str(winreg.QueryValueEx(key, "MachineGuid")[0])
        except OSError:
            return ""

    def usb_devices(self) -> list[UsbDevice]:
        return wmi.parse_usb_entities(self._query("Win32_PnPEntity", wmi.USB_PROPERTIES, wmi.USB_WHERE))
