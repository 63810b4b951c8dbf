"""SNMP device checks on the project's own recordings (tests/testdata/snmp), served by snmpsim: every clone.

The expected values are read off the recordings with the MIBs in hand — HOST-RESOURCES-MIB (RFC 2790)
for hrDeviceStatus / hrPrinterStatus / hrPrinterDetectedErrorState, Printer-MIB (RFC 3805) for the
supplies and the alert table — not copied from the decoder's output. tests/testdata/snmp/README.md says
what each recording holds.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from agent.checks.devices import DeviceConfig, ProbeContext, run_device, snmp
from agent.checks.devices import printermib as pm
from tests.snmpsim_server import V3, Sim, start_snmpsim

DATA = Path(__file__).parent / "testdata" / "snmp"
TIMEOUT = 1.0
NO_USB = ProbeContext(usb_devices=lambda: [])


@pytest.fixture(scope="module")
def own_sim(tmp_path_factory):
    s = start_snmpsim(DATA, tmp_path_factory.mktemp("snmpsim-own"))
    yield s
    s.stop()


def poll(sim: Sim, community: str, printer_mib: bool = True, **kw) -> snmp.PollResult:
    cfg = snmp.SnmpConfig("127.0.0.1", sim.port, community=community, printer_mib=printer_mib, **kw)
    res = snmp.poll(cfg, TIMEOUT, budget=10)
    assert res.answered, res.error
    assert not res.incomplete, res.incomplete
    return res


def printer_state(sim: Sim, **kw) -> pm.PrinterState:
    res = poll(sim, "pw_printer", **kw)
    return pm.parse_printer(res.system, res.tables)


def test_system_group(own_sim):
    st = printer_state(own_sim)
    assert st.sys_descr == "PW-3100 Laser (fictional test printer)"
    assert st.sys_object_id == "1.3.6.1.4.1.32473.1.1"
    assert st.sys_uptime_s == 1234.56  # TimeTicks are hundredths of a second
    assert st.sys_name == "PW-PRN-01"


def test_supplies_every_level_convention(own_sim):
    by_index = {s.index: s for s in printer_state(own_sim).supplies}
    assert list(by_index) == ["1.1", "1.2", "1.3", "1.4", "1.5", "1.6", "1.7"]
    # (description, type, level, max capacity, fraction left, state, receptacle)
    expected = {
        # 1500 of 6000 impressions left: a quarter. The description is GB18030, as printers sold in China send it.
        "1.1": ("黑色墨粉盒 PW-T31K", "toner", 1500, 6000, 0.25, "measured", False),
        # -3: "at least one unit remains" — not a number to show.
        "1.2": ("Drum Unit PW-D31", "opc", -3, 20000, None, "some_remaining", False),
        # -2: the level is unknown.
        "1.3": ("Developer PW-V31", "developer", -2, 50000, None, "unknown", False),
        # -1: other (the printer does not report a level).
        "1.4": ("Fuser Unit PW-F31", "fuser", -1, 100000, None, "other", False),
        # class receptacleThatIsFilled: the level is the space left, 30 of 100 percent.
        "1.5": ("废粉盒", "wasteToner", 30, 100, 0.30, "measured", True),
        # capacity -2 (unknown) with the unit percent(19): the level itself is the percentage left.
        "1.6": ("Staple Cartridge PW-S1", "staples", 12, -2, 0.12, "measured", False),
        # capacity -1: unlimited, so no fraction.
        "1.7": ("Cleaning Roller", "cleanerUnit", 100, -1, None, "unlimited", False),
    }
    for index, (descr, typ, level, cap, ratio, state, receptacle) in expected.items():
        s = by_index[index]
        assert (s.description, s.type, s.level, s.max_capacity, s.ratio, s.state, s.receptacle) == \
            (descr, typ, level, cap, ratio, state, receptacle), index


def test_host_resources_status_of_the_printer_row_only(own_sim):
    st = printer_state(own_sim)
    # hrDeviceTable row 1 is the hrDevicePrinter (status 3 warning); row 2, the network card, is not the printer.
    assert st.device_status == {"1": 3}
    assert st.printer_status == {"1": 3}  # hrPrinterStatus idle(3)
    # hrPrinterDetectedErrorState 0x20 0x10: bit 2 lowToner, bit 11 outputNearFull (bit 0 = 0x80 of octet 0).
    assert st.conditions == ["lowToner", "outputNearFull"]


def test_alert_table_and_a_walk_that_ends_inside_it(own_sim):
    res = poll(own_sim, "pw_printer")
    # The recording ends inside prtAlertDescription: the walk stops at the end of the MIB view, complete.
    assert sorted(res.tables) == ["alerts", "hr_device", "hr_printer", "supplies"]
    alerts = pm.parse_printer(res.system, res.tables).alerts
    assert alerts == [
        # severity warning(4), group markerSupplies(11), code markerTonerAlmostEmpty(1104)
        {"index": "1.1", "severity": "warning", "group": 11, "code": 1104, "description": "墨粉不足"},
        # group output(9), code outputMediaTrayAlmostFull(902)
        {"index": "1.3", "severity": "warning", "group": 9, "code": 902, "description": "出纸盒将满"},
        # warningBinaryChangeEvent(5), group cover(6), code coverClosed(4); its description was cut off
        {"index": "1.7", "severity": "warningBinaryChangeEvent", "group": 6, "code": 4, "description": ""},
    ]


def test_printer_judgement_in_chinese(own_sim):
    cfg = snmp.SnmpConfig("127.0.0.1", own_sim.port, community="pw_printer", printer_mib=True)
    dev = DeviceConfig(kind="printer", name="打印机", timeout=TIMEOUT, supply_warn=0.15)
    res = snmp.probe(dev, cfg, NO_USB)
    # Still printing: low toner and a nearly full output tray are warnings, as is the staples' 12 %.
    assert res.status == "warn" and res.answered
    assert res.message.startswith("墨粉不足、出纸盒将满、Staple Cartridge PW-S1（订书钉）余量低（12%）。耗材：")
    assert "黑色墨粉盒 PW-T31K 25%" in res.message  # the kind (墨粉) is already in the printer's own words
    assert "Drum Unit PW-D31（硒鼓） 有余量" in res.message
    assert "废粉盒 剩余空间 30%" in res.message
    assert "Developer PW-V31（显影剂） 未知；Fuser Unit PW-F31（定影器） 未知" in res.message
    assert "Cleaning Roller（清洁组件） 不限量" in res.message
    assert res.details["low_supplies"] == ["1.6"]


def test_v3_context_selects_the_recording(own_sim):
    st = printer_state(own_sim, version="3", context="pw_printer", user=V3["user"], auth_protocol="SHA",
                       auth_key=V3["auth_key"], priv_protocol="AES", priv_key=V3["priv_key"])
    assert st.sys_name == "PW-PRN-01" and [s.level for s in st.supplies][:2] == [1500, -3]


def test_switch_system_group(own_sim):
    dev = DeviceConfig(kind="other", name="交换机", timeout=TIMEOUT,
                       methods={"snmp": snmp.SnmpConfig("127.0.0.1", own_sim.port, community="pw_switch")})
    out = run_device(dev)
    assert out.status == "ok" and out.value == 1
    method = out.details["methods"][0]
    assert method["sys_descr"] == "PW-S5100-24T Switch (fictional test switch)"
    assert method["sys_object_id"] == "1.3.6.1.4.1.32473.2.1"
    assert method["sys_uptime_s"] == 86400.0


def test_switch_read_as_a_printer_has_no_printer_facts(own_sim):
    # A switch has no Printer-MIB; its hrDeviceTable ends mid-way (one hrDeviceStatus for two rows).
    res = poll(own_sim, "pw_switch")
    assert res.tables["hr_device"] == {
        "1.3.6.1.2.1.25.3.2.1.2.1": "1.3.6.1.2.1.25.3.1.3", "1.3.6.1.2.1.25.3.2.1.2.2": "1.3.6.1.2.1.25.3.1.6",
        "1.3.6.1.2.1.25.3.2.1.5.1": 2}
    assert res.tables["hr_printer"] == {} and res.tables["supplies"] == {} and res.tables["alerts"] == {}
    st = pm.parse_printer(res.system, res.tables)
    assert st.supplies == [] and st.alerts == [] and st.conditions == [] and st.printer_status == {}


def test_switched_off_device_is_absent_within_one_timeout(tmp_path):
    own = start_snmpsim(DATA, tmp_path / "work", v3=False)
    dev = DeviceConfig(kind="printer", name="打印机", timeout=TIMEOUT,
                       methods={"snmp": snmp.SnmpConfig("127.0.0.1", own.port, community="pw_printer",
                                                        printer_mib=True)})
    try:
        on = run_device(dev)
        assert on.value == 1 and on.status == "warn", on.message
        assert "黑色墨粉盒 PW-T31K" in on.message
    finally:
        own.stop()
    # Switched off: nothing answers on its address any more (not even ICMP port-unreachable), so a sink
    # takes the printer's port and counts what the agent sends to it.
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", own.port))
    try:
        off = run_device(dev)
        sink.setblocking(False)
        requests = 0
        while True:
            try:
                sink.recv(65536)
            except BlockingIOError:
                break
            requests += 1
    finally:
        sink.close()
    assert off.status == "fail" and off.value == 0 and off.details["present"] is False
    assert off.message.startswith("打印机未检测到")
    # One request, no retries, no walks: one timeout, never retries x OIDs x timeout. Counted, not timed
    # (the poll's speed is benchmarks/snmp_poll.py's).
    assert requests == 1, f"{requests} requests to a switched-off printer"
