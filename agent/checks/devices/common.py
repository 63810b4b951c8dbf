"""What every probe method of a device is given and returns.

A method is a pair, as a blackbox_exporter module is a config plus a ProbeFn: ``parse(node, device)``
turns its config section into the method's config, and ``probe(device, method_config, ctx)`` looks at the
device and returns a :class:`MethodResult`. Every method has that one signature, so the device runner
calls them all alike from the table in :mod:`agent.checks.devices`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.confignode import Node
from agent.platform import UsbDevice
from agent.wire import Status

DEFAULT_TIMEOUT = 2.0
DEFAULT_SUPPLY_WARN = 0.10


@dataclass
class DeviceConfig:
    kind: str
    name: str
    required: bool = True
    host: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    supply_warn: float = DEFAULT_SUPPLY_WARN
    methods: dict[str, Any] = field(default_factory=dict)  # method name -> its parsed config


@dataclass(frozen=True)
class ProbeContext:
    """What the methods of one device share in a run: the attached USB devices, listed only when a method
    asks (the call returns the exception instead when there is no listing)."""

    usb_devices: Callable[[], list[UsbDevice] | Exception]
    # The platform whose facts the methods read (the local printer queue); None: the running OS's.
    platform: object = None


@dataclass
class MethodResult:
    """One probe method's view of a device.

    ``answered`` says whether the device (or, for a local queue, the thing behind it) answered at all —
    the basis of "present". ``status`` says whether this method's requirement holds — the basis of
    "working". ``error`` means the method itself could not run (e.g. no USB listing on this OS), which
    proves neither presence nor absence.
    """

    method: str
    answered: bool
    status: Status
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "answered": self.answered, "status": self.status,
                "message": self.message, **self.details}


@dataclass(frozen=True)
class Method:
    parse: Callable[[Node, DeviceConfig], Any]  # a method may parse to a list: each item is probed
    probe: Callable[[DeviceConfig, Any, ProbeContext], MethodResult]


def ok(method: str, message: str, /, **details) -> MethodResult:
    return MethodResult(method, True, "ok", message, details)


def warn(method: str, message: str, /, **details) -> MethodResult:
    return MethodResult(method, True, "warn", message, details)


def broken(method: str, message: str, /, **details) -> MethodResult:
    """The device answered but does not work (jammed, USB error code, queue stopped …)."""
    return MethodResult(method, True, "fail", message, details)


def absent(method: str, message: str, /, **details) -> MethodResult:
    """Nothing answered."""
    return MethodResult(method, False, "fail", message, details)


def cannot(method: str, message: str, /, **details) -> MethodResult:
    """The method could not run here; says nothing about the device."""
    return MethodResult(method, False, "error", message, details)
