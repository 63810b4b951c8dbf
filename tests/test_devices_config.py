"""Device configuration (validated at load, errors naming file/line/field) and how a device's probe
methods add up, with ICMP/TCP/HTTP against real loopback sockets."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent import config as agent_config
from agent.checks.devices import DeviceConfig, netprobe, parse_config, probes, run_device, snmp
from agent.confignode import ConfigError, parse_yaml
from tests.conftest import REPO, free_port

DESIGN_EXAMPLE = """
- {kind: kiosk, name: 自助服务一体机, icmp: 10.10.5.21, tcp: 8080}
- {kind: queue, name: 自助取号机, icmp: 10.10.5.22}
- {kind: printer, name: 打印机, snmp: {host: 10.10.5.30, port: 161, community: public}}
- {kind: scanner, name: OCR扫描仪, usb: {vid: "04c5"}}
"""


def load(text: str):
    return parse_config(parse_yaml(text, "agent.yaml"))


def test_design_example_parses():
    kiosk, queue, printer, scanner = load(DESIGN_EXAMPLE)
    assert kiosk.methods["tcp"] == [netprobe.TcpConfig("10.10.5.21", 8080)]  # bare port: the icmp host
    assert queue.methods["icmp"].host == "10.10.5.22"
    assert printer.methods["snmp"].printer_mib is True and printer.methods["snmp"].community == "public"
    assert scanner.methods["usb"].vid == "04c5"
    assert all(d.required for d in (kiosk, queue, printer, scanner))


def test_example_files_load():
    cfg = agent_config.load(REPO / "configs/agent.example.yaml")
    assert isinstance(cfg.devices, list)
    text = (REPO / "configs/devices.example.yaml").read_text(encoding="utf-8")
    devs = parse_config(parse_yaml(text, "devices.example.yaml").mapping(("devices",))["devices"])
    assert {d.kind for d in devs} >= {"kiosk", "queue", "printer", "scanner", "display", "copier"}
    v3 = next(d for d in devs if d.methods.get("snmp") and d.methods["snmp"].version == "3")
    assert v3.methods["snmp"].priv_protocol == "AES"


@pytest.mark.parametrize("text, where", [
    ("- {kind: robot, icmp: 10.0.0.1}\n", r"agent.yaml:1: \[0\].kind: 'robot' is not one of"),
    ("- {kind: kiosk, name: A}\n", r"agent.yaml:1: \[0\]: device has no probe method"),
    ("- {kind: kiosk, tcp: 8080}\n", r"agent.yaml:1: \[0\].tcp: a bare port needs the device's host"),
    ("- {kind: kiosk, icmp: 10.0.0.1, tcp: 70000}\n", r"\[0\].tcp: port 70000 is out of range"),
    ("- {kind: kiosk, http: ftp://x}\n", r"\[0\].http: 'ftp://x' is not an http"),
    ("- kind: printer\n  snmp:\n    host: 10.0.0.5\n    version: 3\n    community: x\n",
     r"agent.yaml:3: \[0\].snmp: SNMP v3 needs 'user'"),
    ("- kind: printer\n  snmp:\n    host: 10.0.0.5\n    version: 3\n    user: u\n    auth_key: short\n",
     r"agent.yaml:6: \[0\].snmp.auth_key: must be at least 8 characters"),
    ("- kind: printer\n  snmp: {host: 10.0.0.5, auth_key: abcdefgh}\n",
     r"agent.yaml:2: \[0\].snmp.auth_key: 'auth_key' is only for version 3"),
    ("- kind: printer\n  snmp: {host: 10.0.0.5, version: 3, user: u, auth_protocol: SHA1, auth_key: abcdefgh}\n",
     r"\[0\].snmp.auth_protocol: 'SHA1' is not one of"),
    ("- {kind: printer, snmp: 10.0.0.5, supply_warn: 150%}\n", r"\[0\].supply_warn: 1.5 is above the maximum 1"),
    ("- {kind: printer, name: A, icmp: 10.0.0.1}\n- {kind: kiosk, name: A, icmp: 10.0.0.2}\n",
     r"agent.yaml:2: \[1\]: device name 'A' is used twice"),
    ("- {kind: printer, snmp: {port: 161}}\n", r"\[0\].snmp: missing required key 'host'"),
    ("- {kind: scanner, escl: true}\n", r"\[0\].escl: 'escl: true' needs the device's host"),
])
def test_bad_config_names_file_line_field(text, where):
    with pytest.raises(ConfigError, match=where):
        load(text)


def test_v3_and_options():
    (dev,) = load("""
- kind: copier
  name: 复印机
  required: false
  timeout: 500ms
  supply_warn: 15%
  snmp: {host: 10.0.0.9, version: 3, user: ops, auth_protocol: SHA256, auth_key: abcdefgh,
         priv_protocol: AES256, priv_key: ijklmnop, context: ""}
""")
    s = dev.methods["snmp"]
    assert (s.version, s.auth_protocol, s.priv_protocol) == ("3", "SHA256", "AES256")
    assert dev.timeout == 0.5 and dev.supply_warn == 0.15 and dev.required is False


def test_snmp_is_imported_only_when_used():
    import subprocess
    import sys

    code = ("import sys; from agent.checks.devices import parse_config; from agent.confignode import parse_yaml;"
            "parse_config(parse_yaml('- {kind: printer, snmp: 10.0.0.5}', 'x'));"
            "print('pysnmp' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


# -- behaviour against real sockets -------------------------------------------------------------------


@pytest.fixture
def kiosk_http():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            code = 200 if self.path == "/health" else 503
            body = b'{"status":"UP"}' if code == 200 else b"down"
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_network_kiosk_present_and_working(kiosk_http):
    (dev,) = load(f"""
- {{kind: kiosk, name: 自助服务一体机, icmp: 127.0.0.1, tcp: {kiosk_http},
   http: {{url: "http://127.0.0.1:{kiosk_http}/health", contains: UP}}, timeout: 1s}}
""")
    out = run_device(dev)
    assert out.status == "ok" and out.value == 1, out.message
    assert [m["method"] for m in out.details["methods"]] == ["icmp", "tcp", "http"]
    assert out.message.startswith("自助服务一体机正常")


def test_present_but_not_working(kiosk_http):
    closed = free_port()
    (dev,) = load(f"""
- {{kind: queue, name: 自助取号机, icmp: 127.0.0.1, tcp: {closed},
   http: "http://127.0.0.1:{kiosk_http}/broken", timeout: 1s}}
""")
    out = run_device(dev)
    assert out.status == "fail" and out.value == 0
    assert out.details["present"] is True and out.details["working"] is False
    assert "拒绝连接" in out.message and "HTTP 503" in out.message


def test_optional_device_absent_is_fail_and_refused_port_is_present_but_broken():
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # swallows SNMP requests: nobody home
    sink.bind(("127.0.0.1", 0))
    try:
        dev = DeviceConfig(kind="display", name="电子显示屏", required=False, timeout=0.5,
                           methods={"snmp": snmp.SnmpConfig("127.0.0.1", sink.getsockname()[1])})
        out = run_device(dev)
    finally:
        sink.close()
    # Absent is absent: an optional device that did not answer must not report a status counted as present.
    assert out.status == "fail" and out.value == 0 and "非必备设备，未在位" in out.message
    assert out.details["present"] is False and out.details["required"] is False
    # A closed TCP port on a live host is refused (RST): the host is there, the service is not.
    dev = DeviceConfig(kind="display", name="电子显示屏", timeout=0.5,
                       methods={"tcp": [netprobe.TcpConfig("127.0.0.1", free_port())]})
    out = run_device(dev)
    assert out.status == "fail" and out.details["present"] is True and out.details["working"] is False


def test_unanswered_udp_snmp_costs_one_timeout():
    """A device that swallows packets (no ICMP port-unreachable either) costs one timeout for SNMP: one
    request, no retries, no walk behind it. Counted at the sink rather than bounded by the wall clock (the
    poll's speed is benchmarks/snmp_poll.py's)."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    try:
        dev = DeviceConfig(kind="printer", name="打印机", timeout=0.5,
                           methods={"snmp": snmp.SnmpConfig("127.0.0.1", sink.getsockname()[1], printer_mib=True)})
        out = run_device(dev)
        requests = _datagrams(sink)
    finally:
        sink.close()
    assert out.status == "fail" and out.details["present"] is False
    assert requests == 1, f"{requests} SNMP requests to a silent device; one timeout means one request"


def _datagrams(sock: socket.socket) -> int:
    """How many datagrams are waiting on ``sock`` (run_device has returned: all it sent has arrived)."""
    sock.setblocking(False)
    n = 0
    while True:
        try:
            sock.recv(65536)
        except BlockingIOError:
            return n
        n += 1


def test_probes_one_per_device_and_disabled_checks():
    class Cfg:
        devices = load(DESIGN_EXAMPLE)
        disabled = {"device.queue"}

        def enabled(self, check):
            return check not in self.disabled

    ps = probes(Cfg(), None)
    assert [(p.check, p.target) for p in ps] == [("device.kiosk", "自助服务一体机"), ("device.printer", "打印机"),
                                                  ("device.scanner", "OCR扫描仪")]
