"""One check result as Prometheus samples, the same way in the agent's /metrics and the collector's.

Standard library only and nothing heavy at import, so the agent ships it and the collector imports it
(as it imports agent.wire). Each renderer formats the numbers and writes the text its own way; what a
result means as series (which families, which labels, which values) is decided here once.

Labels of each sample are given as a tuple in sorted label-name order, the order both renderers write:
``point`` then ``region`` in the middle, ``region`` left out when it is None (the agent does not know it).
"""

from __future__ import annotations

import math
import re

from agent.vocabulary import ERROR, NET_CORE_ICMP, OK, STATUS_CODE, WARN, family_of

CHECK_STATUS = "pointwatch_check_status"
CORE_RTT = "pointwatch_core_rtt_seconds"
CORE_LOSS = "pointwatch_core_loss_ratio"
DEVICE_UP = "pointwatch_device_up"
SUPPLY = "pointwatch_printer_supply_ratio"
UNKNOWN_STATUS_CODE = STATUS_CODE[ERROR]  # a status the vocabulary does not know proves nothing

_SUPPLY_TYPE = re.compile(r"^[A-Za-z]{1,32}$")
_SUPPLY_INDEX = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,9}){0,3}$")


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def supplies_of(details: dict) -> list[tuple[str, float]]:
    """(slot, ratio) of every measured supply in a device result's details; slot = ``<type>/<index>``.

    The device checks put the Printer-MIB supplies (``index``, ``type``, ``ratio`` …) either at the top of
    the details or in the details of the method that read them (``methods: [{method: snmp, supplies}]``).
    Supplies whose level the printer cannot state have no ratio and no sample. The slot, not the printer's
    description text, is the label: bounded and stable.
    """
    lists = [details.get("supplies")]
    methods = details.get("methods")
    if isinstance(methods, list):
        lists += [m.get("supplies") for m in methods if isinstance(m, dict)]
    out: dict[str, float] = {}
    for supplies in lists:
        for s in supplies if isinstance(supplies, list) else ():
            if not isinstance(s, dict) or not _number(s.get("ratio")):
                continue
            typ, index = str(s.get("type") or "unknown"), str(s.get("index") or "")
            if _SUPPLY_TYPE.match(typ) and _SUPPLY_INDEX.match(index):
                out.setdefault(f"{typ}/{index}", float(s["ratio"]))
    return list(out.items())


def result_samples(point: str, region: str | None, check: str, target: str, status: str, value, loss_ratio,
                   supplies) -> list[tuple[str, tuple[str, ...], int | float]]:
    """(family, labels, value) of one result. ``supplies``: its (slot, ratio) pairs (see supplies_of).

    Status and device presence are whole numbers (their codes); measurements are floats.
    """
    scope = (point,) if region is None else (point, region)
    out: list[tuple[str, tuple[str, ...], int | float]] = [
        (CHECK_STATUS, (check, *scope, target), STATUS_CODE.get(status, UNKNOWN_STATUS_CODE))]
    if check == NET_CORE_ICMP:
        if _number(value):
            out.append((CORE_RTT, (*scope, target), float(value)))
        if _number(loss_ratio):
            out.append((CORE_LOSS, (*scope, target), float(loss_ratio)))
    elif family_of(check) == "device":
        kind = check.split(".", 1)[1]
        if status != ERROR:  # an error proves neither presence nor absence
            out.append((DEVICE_UP, (target, kind, *scope), 1 if status in (OK, WARN) else 0))
        out.extend((SUPPLY, (target, kind, *scope, slot), ratio) for slot, ratio in supplies)
    return out
