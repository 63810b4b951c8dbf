"""Facts fail closed: one table, check × fault → status, driven from the registry of checks.

Every check the registry knows has a row: either the platform facts it reads, each with what the check
reports when that fact's source is missing (no such source on this OS), fails (raises), times out (hangs
past the probe's deadline) or answers empty; or NO_PLATFORM_FACT with why it reads none. A check added
without a row fails :func:`test_every_check_has_a_row`; a check that starts reading a fact its row does
not list fails :func:`test_fact_faults` (a fault in an unlisted fact must leave the check as it was).

``error`` rows also say the result names the query (``platform.fact_query(fact)``, e.g. the WMI class or
/proc file), in the message, so whoever reads the point page knows what could not be read.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from types import SimpleNamespace

import pytest

from agent.checks import registry, run_probes
from agent.checks.devices.common import DeviceConfig
from agent.checks.devices.localprinter import LocalPrinterConfig
from agent.checks.devices.usb import UsbConfig
from agent.checks.isolation import IsolationConfig
from agent.checks.usage import parse_config as usage_config
from agent.platform import Adapter, Listener, Platform, ProcessInfo, Route, Session, UsbDevice
from agent.vocabulary import (
    DEVICE_KINDS,
    ERROR,
    FAIL,
    HOST_RESOURCES,
    IDENTITY_FINGERPRINT,
    ISOLATION_INTERFACES,
    ISOLATION_INTERNET,
    NET_CORE_DNS,
    NET_CORE_HTTPS,
    NET_CORE_ICMP,
    NET_CORE_TCP,
    OK,
    USAGE_ACCOUNTS,
    USAGE_LISTENING_PORTS,
    USAGE_PROCESSES,
    USAGE_REMOVABLE_MEDIA,
    device_check,
)

FAULTS = ("missing", "fails", "timeout", "empty")
NO_PLATFORM_FACT = "reads no platform fact"
ALL_ERROR = {f: ERROR for f in FAULTS}
NOT_EMPTY = None  # a scalar fact has no empty answer (a CPU ratio, a boot time, a host name)


def errors_but(**empty) -> dict:
    return {**ALL_ERROR, **empty}


# The table. A cell other than ERROR says why that answer is what was seen.
DEVICE_ROW = {"usb_devices": errors_but(empty=FAIL)}  # nothing attached: the device is seen absent
TABLE: dict[str, object] = {
    NET_CORE_ICMP: NO_PLATFORM_FACT + ": ICMP to configured targets (tests/test_checks_network.py)",
    NET_CORE_TCP: NO_PLATFORM_FACT + ": TCP handshakes to configured targets",
    NET_CORE_DNS: NO_PLATFORM_FACT + ": DNS queries to configured resolvers",
    NET_CORE_HTTPS: NO_PLATFORM_FACT + ": HTTPS to configured channels",
    ISOLATION_INTERNET: NO_PLATFORM_FACT + ": sockets to canaries (tests/test_checks_internet.py)",
    ISOLATION_INTERFACES: {"adapters": ALL_ERROR, "routes": ALL_ERROR},
    IDENTITY_FINGERPRINT: {"machine_id": ALL_ERROR, "hardware_ids": ALL_ERROR,
                           # A PC without an on-board NIC has no identity MAC; the factor count then decides.
                           "physical_macs": errors_but(empty=OK),
                           "hostname": errors_but(empty=NOT_EMPTY), "os_description": errors_but(empty=NOT_EMPTY)},
    USAGE_PROCESSES: {"processes": ALL_ERROR},
    # No USB stick is what was seen: the platform raises when its raw source (every disk, /proc/self/mounts)
    # is empty (tests/test_checks_verdicts.py, tests/test_platform_windows.py).
    USAGE_REMOVABLE_MEDIA: {"removable_volumes": errors_but(empty=OK)},
    USAGE_LISTENING_PORTS: {"listeners": ALL_ERROR},  # on Windows (this table's platform): 135 always listens
    USAGE_ACCOUNTS: {"sessions": errors_but(empty=OK)},  # nobody logged on is a fact, not a failed read
    HOST_RESOURCES: {"cpu_ratio": errors_but(empty=NOT_EMPTY), "memory": ALL_ERROR, "disk_usage": ALL_ERROR,
                     "boot_time": errors_but(empty=NOT_EMPTY)},
    **{device_check(kind): DEVICE_ROW for kind in DEVICE_KINDS},
    # The printer is configured with its local queue as well (Win32_Printer, else the registry's queues).
    device_check("printer"): {**DEVICE_ROW, "printers": errors_but(empty=FAIL)},  # no queue: not installed
}


class Recorded(Platform):
    """A healthy Windows PC from recorded facts; ``faults`` {fact: fault} breaks one source at a time."""

    name = "windows"

    def __init__(self, faults: dict[str, str], release: threading.Event):
        self.faults, self.release, self.read = faults, release, set()

    def _fact(self, fact: str, value, empty):
        self.read.add(fact)
        fault = self.faults.get(fact)
        if fault == "missing":
            raise NotImplementedError
        if fault == "fails":
            raise OSError(f"{self.fact_query(fact)} broke")
        if fault == "timeout":
            self.release.wait(10)
        if fault == "empty":
            return empty
        return value

    def hostname(self):
        return self._fact("hostname", "ybfw-01", "")

    def os_description(self):
        return self._fact("os_description", "Windows 10", "")

    def machine_id(self):
        return self._fact("machine_id", "5b1c7e0e-2f1a-4c1e-9d55-0a1b2c3d4e5f", "")

    def hardware_ids(self):
        return self._fact("hardware_ids", {"system_uuid": "4C4C4544-0042-3510-8052-B4C04F4E4B32",
                                           "system_serial": "7B5RNK2"}, {})

    def physical_macs(self):
        return self._fact("physical_macs", ["30:5a:3a:11:22:33"], [])

    def adapters(self):
        return self._fact("adapters", [Adapter("以太网", "ethernet", True, ("10.10.5.8/24",), physical=True)], [])

    def routes(self):
        return self._fact("routes", [Route("0.0.0.0/0", "10.10.5.1", "以太网"), Route("10.10.5.0/24", "", "以太网")],
                          [])

    def processes(self):
        return self._fact("processes", [ProcessInfo(4, "System"), ProcessInfo(880, "pointwatch-agent.exe")], [])

    def removable_volumes(self):
        return self._fact("removable_volumes", [], [])

    def listeners(self):
        return self._fact("listeners", [Listener("tcp", "0.0.0.0", 135, 800, "svchost.exe")], [])

    def sessions(self):
        return self._fact("sessions", [Session("zhangsan", "console")], [])

    def cpu_ratio(self):
        return self._fact("cpu_ratio", 0.1, None)

    def memory(self):
        return self._fact("memory", SimpleNamespace(total=8 << 30, percent=40.0),
                          SimpleNamespace(total=0, percent=0.0))

    def disk_usage(self, path):
        return self._fact("disk_usage", SimpleNamespace(total=500 << 30, free=250 << 30, percent=50.0),
                          SimpleNamespace(total=0, free=0, percent=0.0))

    def boot_time(self):
        return self._fact("boot_time", time.time() - 3600, None)

    def system_disk(self):
        return "C:\\"

    def usb_devices(self):
        devices = [UsbDevice(f"{i + 1:04x}", "0001", product=kind, interface_classes=(0xFF,))
                   for i, kind in enumerate(DEVICE_KINDS)]
        devices.append(UsbDevice("03f0", "2b17", product="HP LaserJet", interface_classes=(0x07,)))
        return self._fact("usb_devices", devices, [])

    def printers(self):
        return self._fact("printers", [{"Name": "HP LaserJet", "PrinterStatus": 3, "DetectedErrorState": 2,
                                        "WorkOffline": False, "PortName": "USB001"}], [])


def config():
    usage = usage_config(None)
    usage.staff_accounts = ["zhangsan"]
    devices = []
    for i, kind in enumerate(DEVICE_KINDS):
        dev = DeviceConfig(kind=kind, name=f"{kind}-1", timeout=1.0)
        dev.methods["usb"] = UsbConfig(vid=f"{i + 1:04x}")
        if kind == "printer":
            dev.methods["local_printer"] = LocalPrinterConfig("HP LaserJet")
        devices.append(dev)
    platform_checks = {c for c, row in TABLE.items() if isinstance(row, dict)}
    return SimpleNamespace(isolation=IsolationConfig(allowed_interfaces=["以太网"]), usage=usage, devices=devices,
                           core_network=None, enabled=lambda check: check in platform_checks)


DEADLINE = 0.4


def run_all(faults: dict[str, str]) -> tuple[dict[str, object], Recorded]:
    release = threading.Event()
    plat = Recorded(faults, release)
    cfg = config()
    probes = [dataclasses.replace(p, deadline=DEADLINE) if faults and "timeout" in faults.values() else p
              for family in registry.all_families() for p in family.probes(cfg, plat)]
    # localprinter reads the platform's print queues only on Windows (on Linux it asks cupsd over IPP).
    real, sys.platform = sys.platform, "win32"
    try:
        results = run_probes(probes)
    finally:
        sys.platform = real
        release.set()  # the abandoned probe threads end now
    return {r.check: r for r in results}, plat


@pytest.fixture(scope="module")
def baseline():
    results, plat = run_all({})
    return results, plat


def test_every_check_has_a_row():
    known = registry.known_check_ids()
    assert set(TABLE) == known, {"no row": sorted(known - set(TABLE)), "no such check": sorted(set(TABLE) - known)}
    for check, row in TABLE.items():
        if isinstance(row, dict):
            for fact, cells in row.items():
                assert set(cells) == set(FAULTS), (check, fact)


def test_healthy_facts_pass_and_every_listed_fact_is_read(baseline):
    results, plat = baseline
    for check, row in TABLE.items():
        if not isinstance(row, dict):
            assert check not in results
            continue
        assert results[check].status == OK, (check, results[check].message)
        assert set(row) <= plat.read, (check, set(row) - plat.read)
    # Which source answered is in the result.
    assert results[ISOLATION_INTERFACES].details["fact_sources"] == {"adapters": "network adapters",
                                                                     "routes": "routing table"}


ALL_FACTS = sorted({fact for row in TABLE.values() if isinstance(row, dict) for fact in row})


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("fact", ALL_FACTS)
def test_fact_faults(baseline, fact, fault):
    before, _ = baseline
    results, plat = run_all({fact: fault})
    query = plat.fact_query(fact)
    for check, row in TABLE.items():
        if not isinstance(row, dict):
            continue
        got = results[check]
        if fact not in row:
            # A fact the row does not list must not change the check: else the row is incomplete.
            assert got.status == before[check].status, (check, fact, fault, got.message)
            continue
        want = row[fact][fault]
        if want is NOT_EMPTY:
            continue
        assert got.status == want, (check, fact, fault, got.message)
        if want == ERROR:
            assert query in got.message, (check, fact, fault, got.message)
