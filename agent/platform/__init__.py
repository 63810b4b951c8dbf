"""OS facts behind one interface, so checks read the same on Windows and Linux.

Checks receive a :class:`Platform` and never look at the OS themselves; tests feed a platform built from
recorded facts. ``current()`` picks the implementation for the running OS. The facts and the interface are
defined in agent/platform/facts.py.
"""

from __future__ import annotations

import sys

from agent.platform.facts import (
    ADAPTER_KINDS,
    FORBIDDEN_KINDS,
    PLACEHOLDER_SERIALS,
    Adapter,
    Listener,
    Platform,
    ProcessInfo,
    Route,
    Session,
    StorageVolume,
    UsbDevice,
    is_placeholder,
)

__all__ = [
    "ADAPTER_KINDS",
    "Adapter",
    "FORBIDDEN_KINDS",
    "Listener",
    "PLACEHOLDER_SERIALS",
    "Platform",
    "ProcessInfo",
    "Route",
    "Session",
    "StorageVolume",
    "UsbDevice",
    "is_placeholder",
    "current",
]


def current() -> Platform:
    if sys.platform == "win32":
        from agent.platform.windows import WindowsPlatform

        return WindowsPlatform()
    if sys.platform.startswith("linux"):
        from agent.platform.linux import LinuxPlatform

        return LinuxPlatform()
    return Platform()
