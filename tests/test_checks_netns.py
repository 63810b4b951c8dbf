"""net.core.* and isolation.internet over a real network of namespaces (see tests/netns.py).

The agent runs inside its namespace exactly as an IT person would run it at the PC:
`pointwatch-agent check --json --config FILE`, and the tests read the contract JSON it prints.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.certs import make_ca_and_cert
from tests.conftest import REPO, require_root, require_tool
from tests.netns import CORE_IP, INTERNET_IP, Topology

pytestmark = pytest.mark.netns

CONFIG = """\
point: {{code: "T3NET", name: 测试服务点}}
state_dir: {state}
core_network:
  timeout: 1s
  count: 3
  ca_bundle: {ca}
  icmp:
    - {{target: {core}, name: 核心网关}}
    - {{target: 10.10.9.9, name: 黑洞主机}}
  tcp:
    - {{target: "{core}:443", name: 省医保信息平台}}
    - {{target: "10.10.9.9:443", name: 黑洞平台}}
  dns:
    - {{name: ybj.pointwatch.test, expect: [{core}]}}
    - {{name: wrong.pointwatch.test, expect: [{core}]}}
  https:
    - {{url: "https://{core}:8443/health", name: 网上办理渠道}}
isolation:
  timeout: 1s
  internet_canaries:
    - {{target: "{internet}:53"}}
    - {{target: {internet}, method: icmp}}
    - {{name: www.internet.test}}
  allowed_interfaces: [vc0, vi0]
  allowed_subnets: [10.10.0.0/16]
usage:
  allowed_ports: [22]
checks:
  disabled: [identity.fingerprint, host.resources, usage.accounts]
"""


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    require_root("network namespaces")
    require_tool("ip", "iproute2")
    d = tmp_path_factory.mktemp("netns")
    ca, cert, key = make_ca_and_cert(d, CORE_IP)
    with Topology() as topo:
        topo.start_server(topo.core, "--tcp", "443", "--dns", f"ybj.pointwatch.test={CORE_IP}",
                          "--dns", "wrong.pointwatch.test=10.10.7.7", "--https", f"8443:{cert}:{key}")
        topo.start_server(topo.internet, "--tcp", "53", "--dns", f"www.internet.test={INTERNET_IP}")
        # A VNC-like service on the agent's own PC: usage.listening_ports must name it.
        topo.start_server(topo.agent, "--tcp", "5900")
        config = d / "agent.yaml"
        config.write_text(CONFIG.format(state=d / "state", ca=ca, core=CORE_IP, internet=INTERNET_IP),
                          encoding="utf-8")
        topo.config = config
        yield topo


def agent_check(topo: Topology) -> tuple[int, dict]:
    proc = subprocess.run(topo.exec_args(topo.agent, sys.executable, "-m", "agent.cli", "check", "--json",
                                         "--config", str(topo.config)),
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def by_target(doc: dict, check: str) -> dict[str, dict]:
    return {r["target"]: r for r in doc["results"] if r["check"] == check}


def test_core_network_and_internet_reachable(net):
    rc, doc = agent_check(net)
    assert rc == 1  # the black hole, the reachable internet and port 5900 are failures

    icmp = by_target(doc, "net.core.icmp")
    core = icmp["核心网关"]
    assert core["status"] == "ok", core
    assert core["details"]["method"] == "icmp" and core["details"]["loss_ratio"] == 0
    assert 0 < core["value"] < 1.0 and core["unit"] == "seconds"
    assert core["details"]["rtt_max_s"] >= core["details"]["rtt_avg_s"] >= core["details"]["rtt_min_s"] > 0
    hole = icmp["黑洞主机"]
    assert hole["status"] == "fail" and hole["details"]["loss_ratio"] == 1 and "丢包率 100%" in hole["message"]

    tcp = by_target(doc, "net.core.tcp")
    assert tcp["省医保信息平台"]["status"] == "ok" and 0 < tcp["省医保信息平台"]["details"]["connect_s"] < 1
    assert tcp["黑洞平台"]["status"] == "fail" and tcp["黑洞平台"]["details"]["result"] == "timeout"
    assert "超时" in tcp["黑洞平台"]["message"]

    dns = by_target(doc, "net.core.dns")
    assert dns["ybj.pointwatch.test"]["status"] == "ok"
    assert dns["ybj.pointwatch.test"]["details"]["addresses"] == [CORE_IP]
    assert dns["wrong.pointwatch.test"]["status"] == "fail"
    assert dns["wrong.pointwatch.test"]["details"]["result"] == "unexpected_address"

    https = by_target(doc, "net.core.https")["网上办理渠道"]
    assert https["status"] == "ok", https
    assert https["details"]["status_code"] == 200 and 28 < https["details"]["tls_days_left"] <= 30

    internet = by_target(doc, "isolation.internet")["互联网"]
    assert internet["status"] == "fail", internet
    assert set(internet["details"]["reachable"]) == {f"{INTERNET_IP}:53", INTERNET_IP, "www.internet.test"}
    for how in ("DNS 服务有应答", "ICMP 有回应", "域名可解析"):  # :53 must answer DNS, not only accept
        assert how in internet["message"]

    ifaces = by_target(doc, "isolation.interfaces")["本机网卡"]
    assert ifaces["status"] == "warn" and f"vi0 {'198.51.100.1'}" in ifaces["message"]

    ports = by_target(doc, "usage.listening_ports")["监听端口"]
    assert ports["status"] == "fail" and "5900 VNC 远程控制" in ports["message"]
    assert [u["port"] for u in ports["details"]["unexpected"]] == [5900]


def test_internet_cut_off_passes_within_its_timeout(net):
    net.cut_internet()
    try:
        rc, doc = agent_check(net)
    finally:
        net.restore_internet()
    internet = by_target(doc, "isolation.internet")["互联网"]
    assert internet["status"] == "ok", internet
    assert "均不可达" in internet["message"]
    results = {c["canary"]: c["result"] for c in internet["details"]["canaries"]}
    assert results[f"{INTERNET_IP}:53"] == "timeout"
    assert results[INTERNET_IP] in ("no_reply", "timeout")
    assert results["www.internet.test"] in ("timeout", "resolve_failed")
    # That the canaries are tried at once (one timeout, not the sum of three) is held without a wall clock
    # by test_checks_isolation.py::test_every_canary_attempt_runs_at_once_…; the speed is a benchmark's.
    # The core network is unaffected by the cut.
    assert by_target(doc, "net.core.tcp")["省医保信息平台"]["status"] == "ok"
