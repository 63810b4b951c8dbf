"""net.core.https and net.core.dns against real servers on loopback (the namespace tests cover routing)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agent.checks.network import dns_resolve, https_get
from tests.certs import make_ca_and_cert
from tests.conftest import free_port
from tests.netns import HERE


@pytest.fixture(scope="module")
def https_servers(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    ca, cert, key = make_ca_and_cert(d, "127.0.0.1", days=30, name="good")
    ca_soon, cert_soon, key_soon = make_ca_and_cert(d, "127.0.0.1", days=5, name="soon")
    ports = [free_port(), free_port()]
    procs = []
    for port, c, k in ((ports[0], cert, key), (ports[1], cert_soon, key_soon)):
        p = subprocess.Popen([sys.executable, str(HERE / "nsserver.py"), "--addr", "127.0.0.1", "--https", f"{port}:{c}:{k}"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        procs.append(p)
    yield {"good": (f"https://127.0.0.1:{ports[0]}", ca), "soon": (f"https://127.0.0.1:{ports[1]}", ca_soon)}
    for p in procs:
        p.kill()
        p.wait()


def test_https_ok_with_private_ca(https_servers):
    url, ca = https_servers["good"]
    out = https_get(url + "/health", 2, ca_bundle=str(ca))
    assert out.status == "ok" and out.details["status_code"] == 200
    assert 29 < out.details["tls_days_left"] <= 30 and "证书剩余" in out.message


def test_https_certificate_expiring_soon_warns(https_servers):
    url, ca = https_servers["soon"]
    out = https_get(url + "/health", 2, ca_bundle=str(ca))
    assert out.status == "warn" and "证书即将过期" in out.message and out.details["tls_days_left"] < 6


def test_https_wrong_ca_fails(https_servers):
    url, _ = https_servers["good"]
    _, other_ca = https_servers["soon"]
    out = https_get(url + "/health", 2, ca_bundle=str(other_ca))
    assert out.status == "fail" and out.details["result"] == "tls_verify_failed" and "证书校验失败" in out.message


def test_https_status_codes(https_servers):
    url, ca = https_servers["good"]
    assert https_get(url + "/missing", 2, ca_bundle=str(ca)).status == "warn"
    out = https_get(url + "/health", 2, ca_bundle=str(ca), expect_status=204)
    assert out.status == "fail" and "预期 204" in out.message


def test_https_refused():
    out = https_get(f"https://127.0.0.1:{free_port()}/", 1)
    assert out.status == "fail" and out.details["result"] == "connection_refused"


def test_dns_expectations():
    assert dns_resolve("localhost", ["127.0.0.1"], 2).status in ("ok", "warn")
    out = dns_resolve("localhost", ["10.9.9.9"], 2)
    assert out.status == "fail" and "不是预期的" in out.message
    out = dns_resolve("no-such-host.invalid", [], 2)
    assert out.status == "fail" and out.details["result"] in ("resolve_failed", "timeout")
