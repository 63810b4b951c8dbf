"""The IPP print-queue probe against ippeveprinter, a real IPP printer (Debian cups-ipp-utils).

ippeveprinter will not start without Avahi, and Avahi needs a D-Bus system bus. The fixture starts a
private bus and an Avahi daemon for it (Avahi's pid file is fixed under /run, so it runs in a private
mount namespace with its own /run/avahi-daemon), then the printer on a free loopback port. Its web form
at /supplies sets the toner level, which it turns into printer-state-reasons as a real printer would.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from agent.checks.devices import DeviceConfig, cups, parse_config, run_device
from agent.confignode import ConfigError, parse_yaml
from agent.platform import UsbDevice
from tests.conftest import free_port, require_root, require_tool

BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>system</type><listen>unix:path={socket}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow send_destination="*" eavesdrop="true"/><allow receive_sender="*"/>
<allow eavesdrop="true"/><allow own="*"/><allow user="*"/></policy>
</busconfig>
"""
AVAHI_CONF = """[server]
use-ipv4=yes
use-ipv6=no
allow-interfaces=lo
[publish]
publish-addresses=no
publish-hinfo=no
publish-workstation=no
"""


def _wait(cond, seconds: float, what: str):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    pytest.fail(f"{what} did not come up within {seconds:g} s")


@pytest.fixture(scope="module")
def printer(tmp_path_factory):
    ippeve = require_tool("ippeveprinter", "cups-ipp-utils")
    dbus = require_tool("dbus-daemon", "dbus-daemon")
    avahi = require_tool("avahi-daemon", "avahi-daemon")
    require_root("a private Avahi daemon (mount namespace for its fixed pid file)")
    work: Path = tmp_path_factory.mktemp("ipp")
    socket_path = work / "bus.sock"
    (work / "bus.conf").write_text(BUS_CONF.format(socket=socket_path))
    (work / "avahi.conf").write_text(AVAHI_CONF)
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=f"unix:path={socket_path}")
    procs: list[subprocess.Popen] = []
    log = open(work / "log.txt", "wb")  # noqa: SIM115
    try:
        procs.append(subprocess.Popen([dbus, f"--config-file={work / 'bus.conf'}", "--nofork"],
                                      stdout=log, stderr=log))
        _wait(socket_path.exists, 10, "dbus-daemon")
        script = ("mkdir -p /run/avahi-daemon && mount -t tmpfs tmpfs /run/avahi-daemon && exec "
                  f"{avahi} --no-drop-root --no-chroot --no-rlimits --no-proc-title -f {work / 'avahi.conf'}")
        procs.append(subprocess.Popen(["unshare", "--mount", "sh", "-c", script], stdout=log, stderr=log,
                                      env=env))
        time.sleep(0.5)
        port = free_port()
        spool = work / "spool"
        spool.mkdir()
        procs.append(subprocess.Popen([ippeve, "-p", str(port), "-d", str(spool), "-M", "HP",
                                       "-m", "LaserJet Pro", "前台打印机"], stdout=log, stderr=log, env=env))
        uri = f"ipp://127.0.0.1:{port}/ipp/print"

        def up():
            try:
                cups.get_printer_attributes(uri, 0.5)
                return True
            except OSError:
                return False

        _wait(up, 20, f"ippeveprinter ({(work / 'log.txt').read_bytes()[-500:]!r})")
        yield {"uri": uri, "port": port, "proc": procs[-1]}
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()


def set_toner(printer, waste: int, toner: int):
    with urllib.request.urlopen(f"http://127.0.0.1:{printer['port']}/supplies?supply0={waste}&supply1={toner}",
                                timeout=5) as r:
        r.read()


def device(uri: str) -> DeviceConfig:
    return DeviceConfig(kind="printer", name="打印机", timeout=1.0, methods={"cups": cups.CupsConfig(uri)})


def test_queue_states_through_ipp(printer):
    set_toner(printer, 25, 75)
    out = run_device(device(printer["uri"]))
    assert out.status == "ok" and out.value == 1, out.message
    assert "打印队列空闲" in out.message and "Black Toner（墨粉） 75%" in out.message
    assert {s["description"] for s in out.details["supplies"]} == {"Toner Waste Tank", "Black Toner"}

    set_toner(printer, 25, 5)
    out = run_device(device(printer["uri"]))
    assert out.status == "warn" and out.value == 1
    assert "墨粉不足" in out.message and "余量低（5%）" in out.message

    set_toner(printer, 25, 0)
    out = run_device(device(printer["uri"]))
    assert out.status == "fail" and out.value == 0 and out.details["present"] is True
    assert "墨粉耗尽" in out.message
    set_toner(printer, 25, 75)


def test_unknown_queue_is_an_error_not_a_pass(printer):
    bad = printer["uri"].replace("/ipp/print", "/ipp/print/nosuchqueue")
    out = run_device(device(bad))
    assert out.status == "fail" and out.value == 0 and "没有这个打印队列" in out.message


def test_printer_gone_is_absent():
    port = free_port()  # nothing listens there: the print service is down
    out = run_device(device(f"ipp://127.0.0.1:{port}/ipp/print"))
    assert out.status == "fail" and out.details["present"] is False
    assert out.message.startswith("打印机未检测到")


def test_usb_queue_needs_its_usb_device():
    uri = "usb://HP/LaserJet%20Pro%20M404?serial=PHBQ123456"
    hp = UsbDevice("03f0", "e42a", serial="PHBQ123456", product="HP LaserJet Pro M404", manufacturer="HP",
                   interface_classes=(7,))
    assert cups.usb_uri_matches(uri, [hp]) is True
    assert cups.usb_uri_matches(uri, []) is False
    assert cups.usb_uri_matches("ipp://10.0.0.5/ipp/print", []) is None
    no_serial = "usb://Canon/LBP2900"
    canon = UsbDevice("04a9", "2676", product="LBP2900", manufacturer="Canon")
    assert cups.usb_uri_matches(no_serial, [canon]) is True


def test_ipp_request_round_trip_encoding():
    body = cups.encode_get_printer_attributes("ipp://localhost:631/printers/q", 7)
    assert body[:4] == b"\x01\x01\x00\x0b" and body.endswith(b"\x03")
    # A response built by hand: status ok, printer-state idle, two reasons (second value has no name).
    resp = (b"\x01\x01\x00\x00\x00\x00\x00\x07\x04"
            b"\x23\x00\x0dprinter-state\x00\x04\x00\x00\x00\x05"
            b"\x44\x00\x15printer-state-reasons\x00\x0fmedia-jam-error"
            b"\x44\x00\x00\x00\x10toner-low-report\x03")
    status, attrs = cups.decode_response(resp)
    assert status == 0 and attrs["printer-state"] == [5]
    assert attrs["printer-state-reasons"] == ["media-jam-error", "toner-low-report"]
    result = cups.evaluate(attrs, 0.1)
    assert result.status == "fail" and "卡纸" in result.message and "墨粉不足" in result.message


def test_cups_config_forms():
    node = parse_yaml("""
- {kind: printer, name: 前台打印机, cups: HP_LaserJet}
- {kind: printer, name: 二楼打印机, cups: {queue: Canon, server: "10.10.5.2:631"}}
- {kind: printer, name: 网络打印机, cups: {uri: "ipp://10.10.5.30/ipp/print"}}
""", "agent.yaml")
    devs = parse_config(node)
    assert [d.methods["cups"].uri for d in devs] == ["ipp://localhost:631/printers/HP_LaserJet",
                                                     "ipp://10.10.5.2:631/printers/Canon",
                                                     "ipp://10.10.5.30/ipp/print"]
    with pytest.raises(ConfigError, match=r"agent.yaml:1: \[0\].cups: give either"):
        parse_config(parse_yaml("- {kind: printer, cups: {queue: a, uri: 'ipp://x/y'}}\n", "agent.yaml"))
