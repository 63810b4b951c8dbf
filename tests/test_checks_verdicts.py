"""Issue 16, agent side: a verdict only from what was seen.

Each test is a loophole that passed before: a check that could not see its fact must say ``error`` (it earns
nothing), and an empty fact list where a real machine always has something is a read that failed.
"""

from __future__ import annotations

import ipaddress
from types import SimpleNamespace

import pytest

from agent.checks import isolation as iso_family
from agent.checks import run_probes
from agent.checks.identity import fingerprint
from agent.checks.isolation import IsolationConfig, interface_isolation
from agent.checks.usage import accounts, listening_ports, process_usage
from agent.platform import Adapter, Platform, Route, Session
from agent.platform.linux import LinuxPlatform
from agent.platform.windows import WindowsPlatform
from agent.platform.winregistry import RecordedRegistry
from agent.vocabulary import ERROR, ISOLATION_INTERFACES

ETH = Adapter("eth0", "ethernet", True, ("10.10.5.8/24",), physical=True)
LO = Adapter("lo", "loopback", True, ("127.0.0.1/8",))


# -- "could not verify" is error -------------------------------------------------------------------------


def test_accounts_without_staff_list_cannot_verify():
    out = accounts([Session("zhangsan", "tty1")], [])
    assert out.status == ERROR and "无法核对" in out.message and "zhangsan" in out.message


class OneFactor(Platform):
    """A white-box PC from a cloned image: placeholder serials, a MachineGuid, no on-board NIC."""

    def machine_id(self):
        return "5b1c7e0e-2f1a-4c1e-9d55-0a1b2c3d4e5f"

    def hardware_ids(self):
        return {"system_uuid": "03000200-0400-0500-0006-000700080009", "system_serial": "To be filled by O.E.M."}

    def physical_macs(self):
        return []

    def hostname(self):
        return "ybfw-01"


def test_fingerprint_with_too_few_identifiers_cannot_verify():
    out = fingerprint(OneFactor())
    assert out.status == ERROR and "无法可靠核对" in out.message and out.details["factors"] == ["machine_id"]


# -- empty fact lists are errors -------------------------------------------------------------------------


def test_no_adapter_at_all_is_not_only_registered_adapters():
    for adapters in ([], [LO]):
        out = interface_isolation(adapters, [], ["eth0"], [ipaddress.ip_network("10.0.0.0/8")])
        assert out.status == ERROR and "未返回任何网卡" in out.message, adapters


def test_up_adapter_with_an_address_and_no_route_is_an_unread_table():
    out = interface_isolation([ETH, LO], [], ["eth0"], [])
    assert out.status == ERROR and "路由" in out.message
    # An adapter without a routable address (cable in, no DHCP lease yet) may have no route: that is seen.
    bare = Adapter("eth0", "ethernet", True, ("fe80::1/64",), physical=True)
    assert interface_isolation([bare], [], ["eth0"], []).status == "ok"
    assert interface_isolation([ETH], [Route("10.10.5.0/24", "", "eth0")], ["eth0"], []).status == "ok"


def test_windows_wmi_answering_nothing_is_an_error_through_the_probe():
    """PowerShell exiting 0 with empty output (seen on Windows CPython) used to read as "（无）" and pass."""
    silent = WindowsPlatform(run=lambda script: [], addresses={}, registry=RecordedRegistry({}), links={},
                             partitions=[])
    for fact in (silent.adapters, silent.routes, silent.usb_devices, silent.removable_volumes):
        with pytest.raises(Exception, match="no rows"):
            fact()
    config = SimpleNamespace(isolation=IsolationConfig(allowed_interfaces=["以太网"]),
                             enabled=lambda check: check == ISOLATION_INTERFACES)
    (result,) = run_probes(iso_family.probes(config, silent))
    assert result.check == ISOLATION_INTERFACES and result.status == ERROR


def test_empty_process_list_is_an_error():
    out = process_usage([], [], required=[])
    assert out.status == ERROR and "未返回任何进程" in out.message


def test_windows_without_any_listener_is_an_error():
    assert listening_ports([], [], windows=True).status == ERROR
    assert listening_ports([], [], windows=False).status == "ok"  # a Linux PC may listen on nothing


def test_linux_unreadable_proc_is_an_error_not_an_empty_table(tmp_path):
    p = LinuxPlatform(str(tmp_path))  # a root with no /proc: nothing can be read
    with pytest.raises(OSError, match="route"):
        p.routes()
    with pytest.raises(OSError, match="tcp"):
        p.listeners()
    with pytest.raises(OSError, match="mounts"):
        p.removable_volumes()
    # psutil still lists the adapters, but without /sys/class/net a Wi-Fi card would read as virtual.
    with pytest.raises(OSError, match="/sys/class/net/.* is missing"):
        p.adapters()
