"""isolation.internet: a canary is reachable only when its real service answers (issue 16).

Loopback servers play the parts: a "transparent proxy" that accepts every connection and answers nothing
or garbage, a tiny DNS responder (UDP and TCP) that answers the query it was sent, and HTTP servers with
and without the expected marker. Only loopback is ever a target.
"""

from __future__ import annotations

import http.server
import socket
import ssl
import struct
import threading

import pytest

from agent.checks.canaries import Canary, dns_query, is_dns_answer, parse_canary
from agent.checks.isolation import internet_isolation
from agent.confignode import parse_yaml
from tests.certs import make_ca_and_cert

LOCAL = "127.0.0.1"


def dns_response(query: bytes, *, qid: int | None = None) -> bytes:
    """REFUSED to whatever was asked, as a private DNS server without forwarders answers: still a DNS answer."""
    tid = struct.unpack("!H", query[:2])[0] if qid is None else qid
    return struct.pack("!HHHHHH", tid, 0x8185, 1, 0, 0, 0) + query[12:]


class Server:
    """A TCP listener (and a UDP socket on the same port) whose behaviour is one function per connection."""

    def __init__(self, on_tcp=None, on_udp=None):
        self.tcp = socket.create_server((LOCAL, 0))
        self.port = self.tcp.getsockname()[1]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((LOCAL, self.port))
        self.conns: list[socket.socket] = []
        self.on_tcp, self.on_udp = on_tcp, on_udp
        threading.Thread(target=self._accept, daemon=True).start()
        threading.Thread(target=self._datagrams, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            self.conns.append(conn)  # kept open: a proxy that holds the line and says nothing
            if self.on_tcp:
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            self.on_tcp(conn)
        except OSError:
            pass

    def _datagrams(self):
        while True:
            try:
                data, peer = self.udp.recvfrom(4096)
            except OSError:
                return
            if self.on_udp:
                reply = self.on_udp(data)
                if reply:
                    self.udp.sendto(reply, peer)

    def close(self):
        for s in (self.tcp, self.udp, *self.conns):
            s.close()


def tcp_dns(conn):
    n = struct.unpack("!H", conn.recv(2))[0]
    query = conn.recv(n)
    reply = dns_response(query)
    conn.sendall(struct.pack("!H", len(reply)) + reply)


@pytest.fixture
def servers():
    made = []

    def make(**kw):
        made.append(Server(**kw))
        return made[-1]

    yield make
    for s in made:
        s.close()


def dns_canary(port: int) -> Canary:
    return Canary(LOCAL, "dns_server", port)


def test_query_and_answer_are_real_dns():
    qid, query = dns_query()
    assert query[:2] == struct.pack("!H", qid) and query[2:4] == b"\x01\x00"
    assert is_dns_answer(dns_response(query), qid)
    assert not is_dns_answer(dns_response(query, qid=qid ^ 1), qid)  # someone else's answer
    assert not is_dns_answer(query, qid)                             # our own query echoed back (QR clear)
    assert not is_dns_answer(b"HTTP/1.1 400 Bad Request\r\n\r\n", qid)


def test_transparent_proxy_that_accepts_and_says_nothing_is_a_middlebox_not_the_internet(servers):
    proxy = servers()  # accepts every TCP connection, never answers; UDP swallowed
    out = internet_isolation([dns_canary(proxy.port)], 0.5)
    assert out.status == "warn", out.message
    assert "链路上有设备代答" in out.message and f"{LOCAL}:{proxy.port}" in out.message
    row = out.details["canaries"][0]
    assert row["reachable"] is False and row["answered_by"] == "middlebox" and row["result"] == "no_answer"
    assert out.details["reachable"] == []


def test_transparent_proxy_that_answers_garbage_is_a_middlebox(servers):
    proxy = servers(on_tcp=lambda conn: conn.sendall(b"HTTP/1.1 403 Forbidden\r\n\r\n"))
    out = internet_isolation([dns_canary(proxy.port)], 0.5)
    assert out.status == "warn" and out.details["canaries"][0]["result"] == "bad_answer"
    assert "应答不是该服务的" in out.message


def test_udp_reply_to_our_id_that_is_not_a_dns_answer_is_a_middlebox(servers):
    echo = servers(on_udp=lambda q: q)  # our own query reflected: our id, but QR clear
    out = internet_isolation([dns_canary(echo.port)], 0.5)
    assert out.status == "warn" and out.details["canaries"][0]["attempts"]["udp"]["result"] == "bad_answer"


def test_real_dns_server_over_udp_or_tcp_is_the_internet(servers):
    udp_only = servers(on_udp=dns_response)        # TCP accepted but silent, UDP answered
    tcp_only = servers(on_tcp=tcp_dns)             # UDP swallowed, TCP answered
    out = internet_isolation([dns_canary(udp_only.port), dns_canary(tcp_only.port)], 1)
    assert out.status == "fail", out.message
    assert sorted(out.details["reachable"]) == sorted(f"{LOCAL}:{s.port}" for s in (udp_only, tcp_only))
    assert "违反专网专用" in out.message and "DNS 服务有应答" in out.message
    rows = {r["canary"]: r for r in out.details["canaries"]}
    assert rows[f"{LOCAL}:{udp_only.port}"]["attempts"]["udp"]["result"] == "dns_answer"
    assert rows[f"{LOCAL}:{tcp_only.port}"]["attempts"]["tcp"]["result"] == "dns_answer"


def test_a_real_answer_wins_over_a_middlebox_elsewhere(servers):
    real, proxy = servers(on_udp=dns_response), servers()
    out = internet_isolation([dns_canary(proxy.port), dns_canary(real.port)], 1)
    assert out.status == "fail" and out.details["reachable"] == [f"{LOCAL}:{real.port}"]
    assert out.details["answered_by_middlebox"] == [f"{LOCAL}:{proxy.port}"]


class Site(http.server.BaseHTTPRequestHandler):
    marker = b"<title>the real site</title>"

    def do_GET(self):  # noqa: N802
        real = self.path == "/real"
        body = self.marker if real else b"<title>portal login</title>"
        self.send_response(200)
        self.send_header("Server", "RealSite/1.0" if real else "portal")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def site():
    srv = http.server.ThreadingHTTPServer((LOCAL, 0), Site)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://{LOCAL}:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def http_canary(url: str, **kw) -> Canary:
    return Canary(url, "http", **kw)


def test_http_canary_with_the_expected_marker_is_the_internet_and_without_it_a_portal(site):
    out = internet_isolation([http_canary(site + "/real", contains="the real site")], 1)
    assert out.status == "fail" and out.details["canaries"][0]["result"] == "http_answer"
    out = internet_isolation([http_canary(site + "/anything", contains="the real site")], 1)
    assert out.status == "warn" and "链路上有设备代答" in out.message and "页面不含" in out.message
    out = internet_isolation([http_canary(site + "/real", header=("Server", "realsite"))], 1)
    assert out.status == "fail"
    out = internet_isolation([http_canary(site + "/real", expect_status=204, header=("Server", "RealSite"))], 1)
    assert out.status == "warn" and "预期 204" in out.message


def test_https_canary_answered_with_a_certificate_not_the_sites_is_a_middlebox(tmp_path):
    ca, cert, key = make_ca_and_cert(tmp_path, LOCAL)  # a CA the system store does not trust: a proxy's
    srv = http.server.ThreadingHTTPServer((LOCAL, 0), Site)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        out = internet_isolation([http_canary(f"https://{LOCAL}:{srv.server_address[1]}/real")], 1)
    finally:
        srv.shutdown()
        srv.server_close()
    assert out.status == "warn" and out.details["canaries"][0]["result"] == "tls_untrusted"
    assert "证书不属于该网站" in out.message


def test_canary_config_forms():
    def canary(text: str) -> Canary:
        return parse_canary(parse_yaml(text, "agent.yaml"))

    assert canary('{target: "223.5.5.5:53"}').method == "dns_server"
    assert canary('{target: "10.0.0.1:5353", method: dns}').method == "dns_server"
    assert canary('{target: "1.2.3.4:443"}').method == "tcp"
    c = canary('{url: "https://www.baidu.com/", header: "Server: BWS"}')
    assert (c.method, c.expect_status, c.header) == ("http", 200, ("Server", "BWS"))
    assert canary('{url: "http://www.baidu.com/", contains: baidu}').contains == "baidu"
