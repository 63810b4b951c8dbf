"""Windows facts through the registry, WMI and psutil, never localized command output."""

from __future__ import annotations

import os

from agent.platform import Platform


class WindowsPlatform(Platform):
    name = "windows"

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
