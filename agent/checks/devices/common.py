"""What every probe method of a device returns, and how a device's methods add up to one result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.wire import Status


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
