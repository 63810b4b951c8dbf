"""eSCL scanner status against a real HTTP server started by the test, serving ScannerStatus documents
in the shape eSCL scanners send (pwg:State, scan:AdfState, scan:Jobs)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.checks.devices import DeviceConfig, escl, run_device
from tests.conftest import free_port

STATUS = """<?xml version="1.0" encoding="UTF-8"?>
<scan:ScannerStatus xmlns:scan="http://schemas.hp.com/imaging/escl/2011/05/03"
    xmlns:pwg="http://www.pwg.org/schemas/2010/12/sm">
  <pwg:Version>2.63</pwg:Version>
  <pwg:State>{state}</pwg:State>
  <scan:AdfState>{adf}</scan:AdfState>
  <scan:Jobs>
    <scan:JobInfo>
      <pwg:JobUri>/eSCL/ScanJobs/1a2b3c</pwg:JobUri>
      <pwg:JobState>Completed</pwg:JobState>
    </scan:JobInfo>
  </scan:Jobs>
</scan:ScannerStatus>
"""


@pytest.fixture
def scanner():
    doc = {"state": "Idle", "adf": "ScannerAdfEmpty", "code": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server API)
            if self.path != "/eSCL/ScannerStatus":
                self.send_error(404)
                return
            body = STATUS.format(**doc).encode()
            self.send_response(doc["code"])
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield doc, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def dev(url: str) -> DeviceConfig:
    return DeviceConfig(kind="scanner", name="网络扫描仪", timeout=1.0, methods={"escl": escl.EsclConfig(url)})


def test_idle_processing_stopped_and_jam(scanner):
    doc, url = scanner
    out = run_device(dev(url))
    assert out.status == "ok" and out.value == 1 and "扫描仪空闲" in out.message
    assert out.details["methods"][0]["jobs"][0]["state"] == "Completed"
    doc["state"] = "Processing"
    assert run_device(dev(url)).status == "ok"
    doc["state"] = "Stopped"
    out = run_device(dev(url))
    assert out.status == "fail" and out.details["present"] is True and "已停止" in out.message
    doc.update(state="Idle", adf="ScannerAdfJam")
    out = run_device(dev(url))
    assert out.status == "fail" and "进纸器卡纸" in out.message


def test_not_escl_and_gone(scanner):
    doc, url = scanner
    out = run_device(dev(url + "/nothing-here"))
    assert out.status == "fail" and "HTTP 404" in out.message
    gone = run_device(dev(f"http://127.0.0.1:{free_port()}"))
    assert gone.status == "fail" and gone.details["present"] is False


def test_parse_status_rejects_garbage():
    with pytest.raises(ValueError):
        escl.parse_status(b"<html>login</html>")
    with pytest.raises(ValueError):
        escl.parse_status(b"not xml")
