"""The agent's shape: one table of device methods and of net.core protocols with one signature each,
and one vocabulary (module size and import cycles: tests/test_architecture.py)."""

from __future__ import annotations

import ast
import inspect
import sys

from agent.checks import devices, network, registry
from agent.checks.devices import METHODS, PROBE_METHODS, DeviceConfig, run_device
from agent.platform import Platform
from agent.vocabulary import AGENT_CHECK_IDS, CHECKS_BY_FAMILY
from tests.conftest import REPO

AGENT = REPO / "agent"


def test_device_methods_share_one_signature():
    assert tuple(METHODS) == PROBE_METHODS
    for name, method in METHODS.items():
        assert list(inspect.signature(method.parse).parameters) == ["node", "device"], name
        assert list(inspect.signature(method.probe).parameters) == ["device", "cfg", "ctx"], name


def test_device_runner_goes_through_the_table(monkeypatch):
    seen = []

    def fake(device, cfg, ctx):
        seen.append((device.name, cfg, ctx.usb_devices()))
        return devices.common.ok("usb", "已连接")

    monkeypatch.setitem(METHODS, "usb", devices.common.Method(METHODS["usb"].parse, fake))
    out = run_device(DeviceConfig(kind="scanner", name="扫描仪", methods={"usb": "cfg"}), platform=FakePlatform())
    assert out.status == "ok" and seen == [("扫描仪", "cfg", [])]


class FakePlatform(Platform):
    name = "fake"

    def usb_devices(self):
        return []


def test_network_protocols_share_one_signature():
    assert [check for check, _module, _key in network.PROTOCOLS] == list(network.CHECK_IDS)
    for _check, module, key in network.PROTOCOLS:
        assert list(inspect.signature(module.probe).parameters) == ["target", "settings"], key
        assert list(inspect.signature(module.parse_target).parameters) == ["item"], key
        assert module.deadline(network.CoreNetworkConfig()) > 0


def test_family_check_ids_are_the_vocabulary():
    for family in registry.all_families():
        assert family.CHECK_IDS in CHECKS_BY_FAMILY.values(), family.__name__
    assert registry.known_check_ids() == set(AGENT_CHECK_IDS)


def test_vocabulary_is_standard_library_only():
    tree = ast.parse((AGENT / "vocabulary.py").read_text(encoding="utf-8"))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert {m.split(".")[0] for m in imported} <= set(sys.stdlib_module_names)
