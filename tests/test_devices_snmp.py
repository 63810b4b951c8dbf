"""Conformance: SNMP device checks against real recordings of printers and network gear, served by snmpsim.

The recordings and what LibreNMS expects of them come from ../shared/testdata/snmp (a peer's test suite),
so these tests run beside the steering repo and in CI (tests/conformance.py); the project's own
recordings, tested in every clone, are in tests/test_devices_printermib.py.
Every printer in its manifest must read the same supplies and levels here, except where we decide
differently from LibreNMS on purpose; those places are asserted explicitly and explained in
agent/checks/devices/printermib.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.checks.devices import DeviceConfig, ProbeContext, run_device, snmp
from agent.checks.devices import printermib as pm
from tests.conformance import shared_cases, shared_path
from tests.snmpsim_server import V3, Sim, start_snmpsim

RECORDINGS = ("testdata", "snmp")


def _manifest(kind_is_printer: bool):
    def load(data: Path) -> list:
        entries = json.loads((data / "manifest.json").read_text(encoding="utf-8"))
        return [e for e in entries if (e["kind"] == "printer") == kind_is_printer]
    return load


PRINTERS = shared_cases(_manifest(True), *RECORDINGS, ids=lambda e: e["community"])
OTHERS = shared_cases(_manifest(False), *RECORDINGS, ids=lambda e: e["community"])
TIMEOUT = 1.0
NO_USB = ProbeContext(usb_devices=lambda: [])


def printer(supply_warn: float) -> DeviceConfig:
    """The device an SNMP method belongs to: its timeout and supply threshold are the probe's settings."""
    return DeviceConfig(kind="printer", name="打印机", timeout=TIMEOUT, supply_warn=supply_warn)


@pytest.fixture(scope="session")
def sim(tmp_path_factory):
    s = start_snmpsim(shared_path(*RECORDINGS), tmp_path_factory.mktemp("snmpsim"))
    yield s
    s.stop()


def poll_printer(sim: Sim, community: str, **kw) -> pm.PrinterState:
    cfg = snmp.SnmpConfig("127.0.0.1", sim.port, community=community, printer_mib=True, **kw)
    res = snmp.poll(cfg, TIMEOUT, budget=10)
    assert res.answered, res.error
    assert not res.incomplete, res.incomplete
    return pm.parse_printer(res.system, res.tables)


def _compact(text: str) -> str:
    return "".join(text.split())


@pytest.mark.parametrize("entry", PRINTERS)
def test_printer_recording_reads_as_manifest(sim, entry):
    st = poll_printer(sim, entry["community"])
    assert st.sys_descr == entry["sysDescr"].strip()
    expected = entry["expected"]["supplies"]
    assert [s.index for s in st.supplies] == [e["index"] for e in expected]
    for got, exp in zip(st.supplies, expected, strict=True):
        assert got.level == exp["level"] and got.max_capacity == exp["capacity"], exp["index"]
        if "type" in exp:
            assert got.type == pm.SUPPLY_TYPES[exp["type"]]
        if "\n" in exp["descr"]:
            # HP hex-dump descriptions: same text as LibreNMS's reassembly, but we keep the space at the
            # line cut that LibreNMS trims away (see printermib.reassemble_hex_dump).
            assert _compact(got.description) == _compact(exp["librenms_descr"])
            assert "\n" not in got.description
        else:
            # Xerox: LibreNMS cuts ", PN …;SN…"; we keep the printer's full text (the part number is
            # what the point orders).
            assert got.description == exp["descr"].strip()
        if exp["level"] == -3:
            # someRemaining: LibreNMS invents 50 %; we report no ratio and the state.
            assert got.ratio is None and got.state == "some_remaining"
        elif exp.get("percent") is None:
            assert got.ratio is None and got.state == "unknown"
        elif "librenms_poller_percent" in exp:
            # Brother level 0 / capacity unknown: LibreNMS discovery says 100 through a vendor fallback,
            # its poller says 0; we read the level as a percentage, i.e. as its poller does.
            assert round(got.ratio * 100) == exp["librenms_poller_percent"]
        else:
            assert round(got.ratio * 100) == exp["percent"], exp
    hr = entry["expected"].get("hrDeviceStatus") or {}
    for index, value in st.device_status.items():
        assert hr[index] == value
    if hr:
        assert st.device_status, "printer's hrDeviceStatus not found"


def test_error_states_decode_to_named_conditions(sim):
    # konica 0x0100: bit 7 serviceRequested; samsung 0x8000: bit 0 lowPaper (bit 0 = MSB of octet 0).
    assert poll_printer(sim, "konica_c250i").conditions == ["serviceRequested"]
    assert poll_printer(sim, "samsungprinter_m4080fx").conditions == ["lowPaper"]
    assert poll_printer(sim, "jetdirect_m130nw").conditions == []


def test_judgement_and_chinese_message(sim):
    cfg = snmp.SnmpConfig("127.0.0.1", sim.port, community="epson", printer_mib=True)
    res = snmp.probe(printer(supply_warn=0.10), cfg, NO_USB)
    assert res.status == "warn" and res.answered  # every ink at 1 %
    assert "余量低" in res.message and "墨水" in res.message and "1%" in res.message
    res = snmp.probe(printer(supply_warn=0.10),
                     snmp.SnmpConfig("127.0.0.1", sim.port, community="jetdirect_m252dw", printer_mib=True), NO_USB)
    assert res.status == "ok" and res.message.startswith("运行正常。耗材：")
    assert "Yellow Cartridge HP CF402X（墨粉） 36%" in res.message


@pytest.mark.parametrize("entry", OTHERS)
def test_network_gear_system_group(sim, entry):
    dev = DeviceConfig(kind="other", name=entry["model"], timeout=TIMEOUT,
                       methods={"snmp": snmp.SnmpConfig("127.0.0.1", sim.port, community=entry["community"])})
    out = run_device(dev)
    assert out.status == "ok" and out.value == 1
    assert out.details["methods"][0]["sys_descr"] == entry["sysDescr"].strip()
    assert out.details["methods"][0]["sys_object_id"] == entry["sysObjectID"]


def test_v3_auth_priv_sha_aes(sim):
    st = poll_printer(sim, "", version="3", context="xerox", user=V3["user"], auth_protocol="SHA",
                      auth_key=V3["auth_key"], priv_protocol="AES", priv_key=V3["priv_key"])
    assert st.sys_descr.startswith("Xerox AltaLink C8045")
    assert [round(s.ratio * 100) for s in st.supplies][:4] == [20, 66, 72, 60]


def test_v3_wrong_key_is_not_a_pass(sim):
    cfg = snmp.SnmpConfig("127.0.0.1", sim.port, version="3", context="xerox", user=V3["user"],
                          auth_key="wrong-secret-1", priv_key=V3["priv_key"], printer_mib=True)
    res = snmp.probe(printer(supply_warn=0.1), cfg, NO_USB)
    assert res.status == "fail" and not res.answered


def test_cli_check_shows_devices_with_supplies_in_chinese(sim, tmp_path):
    """`pointwatch-agent check` as the IT person runs it at the PC: the table names each device and its
    supplies in Chinese, and --json carries the supplies for the collector."""
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"""
point: {{code: "620102001001", name: 城关区某村医保服务点}}
state_dir: {tmp_path / "state"}
devices:
  - {{kind: printer, name: 打印机, snmp: {{host: 127.0.0.1, port: {sim.port}, community: jetdirect_m252dw}}}}
  - {{kind: copier, name: 复印机, snmp: {{host: 127.0.0.1, port: {sim.port}, community: konica_c250i}}}}
""", encoding="utf-8")
    exe = Path(sys.executable).parent / "pointwatch-agent"
    out = subprocess.run([str(exe), "check", "--config", str(cfg)], capture_output=True, text=True, timeout=120)
    devices = [line for line in out.stdout.splitlines() if "device." in line]
    assert len(devices) == 2, out.stdout + out.stderr
    printer = next(line for line in devices if "device.printer" in line)
    assert "打印机正常" in printer and "耗材：" in printer and "Black Cartridge HP CF400X（墨粉） 63%" in printer
    copier = next(line for line in devices if "device.copier" in line)
    assert "需要维修" in copier and "Waste Toner Box（废粉盒） 有余量" in copier
    js = subprocess.run([str(exe), "check", "--config", str(cfg), "--json"], capture_output=True, text=True,
                        timeout=120)
    doc = json.loads(js.stdout)
    res = {r["target"]: r for r in doc["results"] if r["check"].startswith("device.")}
    assert res["打印机"]["status"] == "ok" and res["打印机"]["value"] == 1
    assert [s["ratio"] for s in res["打印机"]["details"]["supplies"]] == [0.63, 0.63, 0.88, 0.36]
    assert res["复印机"]["status"] == "warn"


@pytest.mark.parametrize("entry", PRINTERS + OTHERS)
def test_own_wire_reads_what_pysnmp_reads(sim, entry):
    """v1/v2c go over agent/checks/devices/snmpwire.py, not pysnmp: on every recording both must read the
    same system group and the same table rows, value for value (bytes, ints, dotted OIDs)."""
    from agent.checks.devices import snmpv3

    for version in ("2c", "1"):
        cfg = snmp.SnmpConfig("127.0.0.1", sim.port, version=version, community=entry["community"],
                              printer_mib=True)
        own, ref = snmp.poll(cfg, TIMEOUT, budget=10), snmpv3.poll(cfg, TIMEOUT, budget=10)
        # (A v1 agent lacking one system OID answers the whole GET with noSuchName: both say so alike.)
        assert (own.answered, own.error) == (ref.answered, ref.error), version
        assert ref.answered or version == "1"
        assert not own.incomplete and not ref.incomplete
        assert own.system == ref.system
        assert own.tables == ref.tables, version
