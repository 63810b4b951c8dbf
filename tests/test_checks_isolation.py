"""isolation.interfaces on recorded adapter/route facts; isolation.internet edge cases on loopback."""

from __future__ import annotations

import ipaddress
import socket

from agent.checks.isolation import Canary, interface_isolation, internet_isolation
from agent.platform import Adapter, Route

NETS = [ipaddress.ip_network("10.0.0.0/8")]
ETH = Adapter("eth0", "ethernet", True, ("10.10.5.8/24",), physical=True)
DEFAULT = Route("0.0.0.0/0", "10.10.5.1", "eth0")
LO = Adapter("lo", "loopback", True, ("127.0.0.1/8",))


def test_clean_terminal_passes():
    out = interface_isolation([ETH, Adapter("lo", "loopback", True, ("127.0.0.1/8",))], [DEFAULT], ["eth0"], NETS)
    assert out.status == "ok" and "eth0" in out.message


def test_wireless_cellular_tunnel_up_fail():
    adapters = [ETH, Adapter("wlan0", "wireless", True, description="wireless (iwlwifi)"),
                Adapter("usb0", "cellular", True, description="cellular/USB tether (rndis_host)"),
                Adapter("tun0", "tunnel", True), Adapter("wlan1", "wireless", False)]
    for allowed in (["eth0"], []):
        out = interface_isolation(adapters, [DEFAULT], allowed, NETS)
        assert out.status == "fail"
        for text in ("无线网卡 wlan0 已启用", "移动网络/手机共享网卡 usb0", "隧道/VPN 网卡 tun0"):
            assert text in out.message
        assert "wlan1" not in out.message  # present but down is fine


def test_registered_vpdn_modem_or_vpn_adapter_is_the_private_link():
    """004: "建设VPDN医保4G/5G专网". An adapter named in allowed_interfaces is allowed whatever its kind."""
    wwan = Adapter("wwan0", "cellular", True, ("10.200.1.7/30",), description="cellular (qmi_wwan)")
    vpn = Adapter("ybvpn", "tunnel", True, ("10.201.0.2/32",))
    out = interface_isolation([wwan, LO], [Route("0.0.0.0/0", "10.200.1.6", "wwan0")], ["wwan0"], NETS)
    assert out.status == "ok" and "wwan0" in out.message, out.message
    out = interface_isolation([ETH, vpn], [DEFAULT], ["eth0", "ybvpn"], NETS)
    assert out.status == "ok" and out.details["registered_up"] == ["eth0", "ybvpn"]
    # A second cellular adapter nobody registered is still the violation it was.
    phone = Adapter("usb0", "cellular", True, description="cellular/USB tether (rndis_host)")
    out = interface_isolation([wwan, phone], [Route("0.0.0.0/0", "10.200.1.6", "wwan0")], ["wwan0"], NETS)
    assert out.status == "fail" and "usb0" in out.message and "wwan0" not in out.message


def test_unlisted_nic_and_second_default_route_fail():
    adapters = [ETH, Adapter("eth1", "ethernet", True, ("192.168.1.5/24",), physical=True)]
    routes = [DEFAULT, Route("0.0.0.0/0", "192.168.1.1", "eth1", 100)]
    out = interface_isolation(adapters, routes, ["eth0"], NETS)
    assert out.status == "fail"
    assert "未登记的有线网卡 eth1 已启用" in out.message and "2 条 IPv4 默认路由" in out.message
    assert "192.168.1.5" in out.message  # the address outside the subnets is named too


def test_address_outside_subnets_warns():
    adapters = [Adapter("eth0", "ethernet", True, ("10.10.5.8/24", "192.168.9.9/24", "fe80::1/64"))]
    out = interface_isolation(adapters, [DEFAULT], [], NETS)
    assert out.status == "warn" and out.details["outside_addresses"] == ["eth0 192.168.9.9"]


def test_no_canaries_configured_is_an_error():
    # Nothing was tried, so nothing was seen: 专网隔离 could not be verified.
    assert internet_isolation([], 1).status == "error"


def test_canary_handshake_on_loopback_is_no_proof_and_a_closed_port_is_not_reachable():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    try:
        out = internet_isolation([Canary("127.0.0.1", "tcp", srv.getsockname()[1]),
                                  Canary("127.0.0.1", "tcp", closed.getsockname()[1])], 1)
        # A completed handshake alone was "the internet is reachable" (issue 16): anything on the link
        # can complete it. It is a finding of its own, never a 专网 violation.
        assert out.status == "warn" and out.details["reachable"] == []
        assert out.details["answered_by_middlebox"] == [f"127.0.0.1:{srv.getsockname()[1]}"]
        out = internet_isolation([Canary("127.0.0.1", "tcp", closed.getsockname()[1]),
                                  Canary("no-such-host.invalid", "dns")], 1)
        assert out.status == "ok"
    finally:
        srv.close()
        closed.close()


def test_every_canary_attempt_runs_at_once_so_the_check_waits_one_timeout_not_their_sum(monkeypatch):
    """README/isolation: all canaries are tried at once. Each attempt here waits on one barrier that opens
    only when every attempt is running at the same moment: tried one after another, the first would never
    get past it (and would come back as a timeout). Event-based, where tests/test_checks_netns.py used to
    bound the check's duration by wall clock; the speed itself is benchmarks/check_cycle.py's."""
    import threading

    from agent.checks import isolation

    canaries = [Canary("192.0.2.1", "tcp", 443), Canary("192.0.2.2", "dns_server", 53), Canary("192.0.2.3", "icmp")]
    barrier = threading.Barrier(len(canaries))

    def meet(c, deadline, state):
        barrier.wait(timeout=60)  # raises BrokenBarrierError -> an error, not "refused", if run one by one
        raise ConnectionRefusedError

    monkeypatch.setattr(isolation, "attempts", lambda c: [("only", meet)])
    rows = isolation.internet_rows(canaries, timeout=120)
    assert [r["result"] for r in rows] == ["refused"] * 3
