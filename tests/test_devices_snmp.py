"""SNMP device checks against real recordings of printers and network gear, served by snmpsim.

The recordings and what LibreNMS expects of them come from ../shared/testdata/snmp (a peer's test suite).
Every printer in its manifest must read the same supplies and levels here, except where we decide
differently from LibreNMS on purpose; those places are asserted explicitly and explained in
agent/checks/devices/printermib.py.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.checks.devices import DeviceConfig, ProbeContext, run_device, snmp
from agent.checks.devices import printermib as pm
from tests.conftest import SHARED, free_port, require

DATA = SHARED / "testdata/snmp"
MANIFEST = json.loads((DATA / "manifest.json").read_text(encoding="utf-8")) if DATA.exists() else []
PRINTERS = [e for e in MANIFEST if e["kind"] == "printer"]
OTHERS = [e for e in MANIFEST if e["kind"] != "printer"]
V3 = {"user": "pointwatch", "auth_key": "auth-secret-1", "priv_key": "priv-secret-1"}
TIMEOUT = 1.0
NO_USB = ProbeContext(usb_devices=lambda: [])


def printer(supply_warn: float) -> DeviceConfig:
    """The device an SNMP method belongs to: its timeout and supply threshold are the probe's settings."""
    return DeviceConfig(kind="printer", name="打印机", timeout=TIMEOUT, supply_warn=supply_warn)


@dataclass
class Sim:
    port: int
    proc: subprocess.Popen

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def _readable_by_others(path: Path) -> bool:
    """Whether user 'nobody' could run this interpreter: every parent must be o+x and the file o+r."""
    path = path.resolve()
    for parent in path.parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            return False
    return bool(path.stat().st_mode & stat.S_IROTH)


def start_snmpsim(data_dir: Path, work: Path, v3: bool = True) -> Sim:
    exe = shutil.which("snmpsim-command-responder") or str(Path(sys.executable).parent / "snmpsim-command-responder")
    require(os.path.exists(exe), "snmpsim-command-responder not installed (pip install -e '.[dev]')")
    require(data_dir.exists(), f"{data_dir} missing (the shared SNMP recordings)")
    cache = work / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [exe, f"--data-dir={data_dir}", f"--cache-dir={cache}", f"--agent-udpv4-endpoint=127.0.0.1:{port}",
           "--log-level=error"]
    if v3:
        cmd += [f"--v3-user={V3['user']}", f"--v3-auth-key={V3['auth_key']}", "--v3-auth-proto=SHA",
                f"--v3-priv-key={V3['priv_key']}", "--v3-priv-proto=AES"]
    env = dict(os.environ)
    if os.geteuid() == 0:
        # snmpsim refuses to keep root; it drops to the given user, who must be able to read the Python
        # interpreter (a pyenv Python under /root is not). Where it cannot, snmpsim's own escape hatch.
        if _readable_by_others(Path(sys.executable)):
            cmd += ["--process-user=nobody", "--process-group=nogroup"]
            os.chmod(work, 0o777)
            os.chmod(cache, 0o777)
        else:
            env["SNMPSIM_ALLOW_ROOT"] = "true"
    log = open(work / "snmpsim.log", "wb")  # noqa: SIM115 (lives as long as the process)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    sim = Sim(port, proc)
    community = data_dir.glob("*.snmprec").__next__().stem
    t_end = time.monotonic() + 90  # the first start indexes every recording
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            pytest.fail(f"snmpsim exited: {(work / 'snmpsim.log').read_text(errors='replace')[-2000:]}")
        if snmp.poll(snmp.SnmpConfig("127.0.0.1", port, community=community), 0.5, 1).answered:
            return sim
    sim.stop()
    pytest.fail("snmpsim did not answer within 90 s")


@pytest.fixture(scope="session")
def sim(tmp_path_factory):
    s = start_snmpsim(DATA, tmp_path_factory.mktemp("snmpsim"))
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


@pytest.mark.parametrize("entry", PRINTERS, ids=[e["community"] for e in PRINTERS])
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


@pytest.mark.parametrize("entry", OTHERS, ids=[e["community"] for e in OTHERS])
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


def test_switched_off_device_is_absent_within_one_timeout(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(DATA / "canonprinter_lbp.snmprec", data)
    own = start_snmpsim(data, tmp_path / "work", v3=False)
    dev = DeviceConfig(kind="printer", name="打印机", timeout=TIMEOUT,
                       methods={"snmp": snmp.SnmpConfig("127.0.0.1", own.port, community="canonprinter_lbp",
                                                        printer_mib=True)})
    try:
        on = run_device(dev)
        assert on.status == "ok" and on.value == 1, on.message
        assert "Canon Cartridge 719/719H" in on.message
    finally:
        own.stop()
    t0 = time.monotonic()
    off = run_device(dev)
    elapsed = time.monotonic() - t0
    assert off.status == "fail" and off.value == 0 and off.details["present"] is False
    assert off.message.startswith("打印机未检测到")
    # One request, no retries, no walks: about one timeout, never retries x OIDs x timeout.
    assert elapsed < TIMEOUT * 2, elapsed


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
