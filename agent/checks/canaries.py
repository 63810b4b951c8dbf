"""isolation.internet's canaries: a public service counts as reachable only when that service answers.

A transparent proxy or a firewall on a government network may complete every TCP handshake itself, so a
handshake proves nothing. Each canary has its own proof:

- ``dns_server``: a DNS server (``host:53``, or ``method: dns`` on another port) answers a real query with our own
  random id, over UDP and TCP at once: a well-formed response header, QR set, our question echoed.
- ``http``: a URL answers with the expected status and, for plain HTTP, a marker in a header or the body
  (a captive portal answers 200 too). For HTTPS the certificate must verify for the URL's host name: a
  proxy without the site's key cannot produce that.
- ``tcp`` on another port: the handshake is all there is, so it is never proof of a way out.
- ``icmp``: an echo reply; ``dns`` (a ``name:``): the system resolver resolves a public name.

Every attempt returns a row: ``reachable`` True (the real service answered), False, or None (could not
test), and ``answered_by`` = "middlebox" when something completed the handshake but not the answer.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from dataclasses import dataclass

from agent.confignode import Node, optional

REACHED, MIDDLEBOX = "service", "middlebox"
# Message labels of what was seen, by the row's result.
RESULT_LABEL = {"dns_answer": "DNS 服务有应答", "http_answer": "网站有预期应答", "echo_reply": "ICMP 有回应",
                "resolved": "域名可解析", "handshake_only": "仅完成 TCP 握手，未校验应答",
                "no_answer": "握手后无应答", "bad_answer": "应答不是该服务的", "tls_untrusted": "证书不属于该网站"}


@dataclass
class Canary:
    target: str                  # address or host name; the URL for http
    method: str                  # dns_server, http, tcp, icmp or dns (resolve a name)
    port: int | None = None
    expect_status: int = 200     # http
    contains: str | None = None  # http: a marker in the body
    header: tuple[str, str] | None = None  # http: (name, a substring of its value)


def parse_canary(item: Node) -> Canary:
    c = item.mapping(("target", "name", "method", "url", "expect_status", "contains", "header"))
    if "url" in c:
        return _parse_http(c)
    if "target" in c:
        method = optional(c, "method", None, lambda n: n.choice(("tcp", "icmp", "dns")))
        if method == "icmp" or (method is None and ":" not in c["target"].str()):
            return Canary(c["target"].host(), "icmp")
        host, port = c["target"].host_port()
        if method == "dns" or (method is None and port == 53):
            return Canary(host, "dns_server", port)
        return Canary(host, "tcp", port)
    if "name" in c:
        return Canary(c["name"].host(), "dns")
    item.fail("a canary needs 'url' (a public web site), 'target' (address or address:port) "
              "or 'name' (a host name to resolve)")


def _parse_http(c: dict[str, Node]) -> Canary:
    import urllib.parse

    url = c["url"].str()
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        c["url"].fail(f"'{url}' is not an http:// or https:// URL")
    header = None
    if "header" in c:
        name, sep, value = c["header"].str().partition(":")
        if not sep or not name.strip() or not value.strip():
            c["header"].fail("expected 'Name: part of its value', e.g. 'Server: BWS'")
        header = (name.strip(), value.strip())
    contains = optional(c, "contains", None, Node.str)
    if parts.scheme == "http" and not (contains or header):
        c["url"].fail("a plain http:// canary needs 'contains' or 'header': a captive portal answers 200 too")
    return Canary(url, "http", expect_status=optional(c, "expect_status", 200, lambda n: n.int(100, 599)),
                  contains=contains, header=header)


def label(c: Canary) -> str:
    if c.method in ("tcp", "dns_server"):
        return f"[{c.target}]:{c.port}" if ":" in c.target else f"{c.target}:{c.port}"
    return c.target


def attempts(c: Canary) -> list[tuple[str, object]]:
    """(transport, function(canary, deadline, state) -> row) for one canary; a DNS canary has two."""
    if c.method == "dns_server":
        return [("udp", dns_udp), ("tcp", dns_tcp)]
    return [(c.method, {"http": http_answer, "tcp": tcp_handshake, "icmp": icmp_echo, "dns": resolve_name}
             [c.method])]


def _left(deadline: float) -> float:
    return max(0.01, deadline - time.monotonic())


# -- DNS --------------------------------------------------------------------------------------------------
# The query: ". IN NS" with recursion desired; every DNS server answers it, even with REFUSED.
QUESTION = b"\x00" + struct.pack("!HH", 2, 1)


def dns_query() -> tuple[int, bytes]:
    qid = int.from_bytes(os.urandom(2), "big")
    return qid, struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + QUESTION


def is_dns_answer(data: bytes, qid: int) -> bool:
    """A DNS response to our query: our id, QR set, a standard query, and our question when one is echoed."""
    if len(data) < 12:
        return False
    rid, flags, qdcount = struct.unpack("!HHH", data[:6])
    if rid != qid or not flags & 0x8000 or (flags >> 11) & 0xF != 0:
        return False
    return qdcount == 0 or (qdcount == 1 and data[12:12 + len(QUESTION)] == QUESTION)


def _connect(c: Canary, deadline: float, state: dict) -> socket.socket:
    sock = socket.create_connection((c.target, c.port), timeout=_left(deadline))
    state["connected"] = True
    return sock


def dns_udp(c: Canary, deadline: float, state: dict) -> dict:
    qid, query = dns_query()
    family = socket.AF_INET6 if ":" in c.target else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(_left(deadline))
        sock.connect((c.target, c.port))
        sock.send(query)
        while True:  # stray datagrams are skipped; a wrong answer to our query is a finding
            data = sock.recv(4096)
            if is_dns_answer(data, qid):
                return {"reachable": True, "result": "dns_answer"}
            if len(data) >= 2 and data[:2] == query[:2]:
                return {"reachable": False, "result": "bad_answer", "answered_by": MIDDLEBOX}
            sock.settimeout(_left(deadline))


def dns_tcp(c: Canary, deadline: float, state: dict) -> dict:
    qid, query = dns_query()
    with _connect(c, deadline, state) as sock:
        sock.settimeout(_left(deadline))
        sock.sendall(struct.pack("!H", len(query)) + query)
        # The header and the echoed question are all the judgement needs (a root NS answer is ~1 KB).
        data = _read_up_to(sock, 2 + HEAD, deadline, want=lambda b: len(b) >= 2 + min(HEAD, _length(b)))
    if len(data) >= 2 and is_dns_answer(data[2:2 + _length(data)], qid):
        return {"reachable": True, "result": "dns_answer"}
    return {"reachable": False, "result": "bad_answer" if data else "no_answer", "answered_by": MIDDLEBOX}


HEAD = 12 + len(QUESTION)


def _length(data: bytes) -> int:
    """The DNS-over-TCP length prefix (RFC 7766); what it promises, whether or not it has all arrived."""
    return int.from_bytes(data[:2], "big") if len(data) >= 2 else HEAD


def _read_up_to(sock: socket.socket, limit: int, deadline: float, want) -> bytes:
    """Bytes until ``want(bytes)``, ``limit`` bytes, the peer's close or the deadline (what came so far)."""
    data = b""
    while len(data) < limit and not want(data):
        sock.settimeout(_left(deadline))
        try:
            chunk = sock.recv(limit - len(data))
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
    return data


# -- HTTP -------------------------------------------------------------------------------------------------


def http_answer(c: Canary, deadline: float, state: dict) -> dict:
    import ssl
    import urllib.parse

    parts = urllib.parse.urlsplit(c.target)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    raw = socket.create_connection((host, port), timeout=_left(deadline))
    state["connected"] = True
    try:
        sock = raw
        if parts.scheme == "https":
            try:
                sock = ssl.create_default_context().wrap_socket(raw, server_hostname=host)
            except ssl.SSLCertVerificationError as exc:
                return {"reachable": False, "result": "tls_untrusted", "answered_by": MIDDLEBOX,
                        "error": exc.verify_message or str(exc)}
            except (ssl.SSLError, ConnectionResetError) as exc:
                return {"reachable": False, "result": "bad_answer", "answered_by": MIDDLEBOX, "error": str(exc)}
        request = (f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: pointwatch-agent\r\n"
                   "Accept: */*\r\nConnection: close\r\n\r\n")
        sock.sendall(request.encode("ascii", "replace"))
        data = _read_up_to(sock, 256 * 1024, deadline, want=lambda b: _http_enough(b, c))
    except OSError as exc:
        return {"reachable": False, "result": "no_answer", "answered_by": MIDDLEBOX, "error": str(exc)}
    finally:
        raw.close()
    return _judge_http(data, c)


def _http_enough(data: bytes, c: Canary) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    return bool(sep) and (not c.contains or c.contains.encode() in body)


def _judge_http(data: bytes, c: Canary) -> dict:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("iso-8859-1").split("\r\n")
    status_line = lines[0].split(" ", 2) if lines and lines[0] else []
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/") or not status_line[1].isdigit():
        return {"reachable": False, "result": "bad_answer" if data else "no_answer", "answered_by": MIDDLEBOX}
    status = int(status_line[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    row = {"status_code": status}
    problems = []
    if status != c.expect_status:
        problems.append(f"HTTP {status}（预期 {c.expect_status}）")
    if c.header and c.header[1].lower() not in headers.get(c.header[0].lower(), "").lower():
        problems.append(f"缺少响应头 {c.header[0]}: {c.header[1]}")
    if c.contains and c.contains.encode() not in body:
        problems.append(f"页面不含“{c.contains}”")
    if problems:
        return {**row, "reachable": False, "result": "bad_answer", "answered_by": MIDDLEBOX,
                "mismatch": "；".join(problems)}
    return {**row, "reachable": True, "result": "http_answer"}


# -- the others ----------------------------------------------------------------------------------------------


def tcp_handshake(c: Canary, deadline: float, state: dict) -> dict:
    with _connect(c, deadline, state):
        pass
    # Whoever completed it, nothing proves it was the service: a finding, never a way out by itself.
    return {"reachable": False, "result": "handshake_only", "answered_by": MIDDLEBOX}


def icmp_echo(c: Canary, deadline: float, state: dict) -> dict:
    import ping3

    rtt = ping3.ping(c.target, timeout=_left(deadline), unit="s")
    return {"reachable": isinstance(rtt, float), "result": "echo_reply" if isinstance(rtt, float) else "no_reply"}


def resolve_name(c: Canary, deadline: float, state: dict) -> dict:
    from agent.checks.network.dns import resolve

    return {"reachable": True, "result": "resolved", "addresses": resolve(c.target, _left(deadline))}


def run_attempt(fn, c: Canary, deadline: float, state: dict) -> dict:
    """One attempt, its errors turned into rows the way the old single-method probe did."""
    try:
        return fn(c, deadline, state)
    except PermissionError as exc:  # no raw/unprivileged ICMP socket: this canary cannot be tested
        return {"reachable": None, "result": "not_permitted", "error": str(exc)}
    except TimeoutError:
        if state.get("connected"):
            return {"reachable": False, "result": "no_answer", "answered_by": MIDDLEBOX}
        return {"reachable": False, "result": "timeout"}
    except ConnectionRefusedError:
        # A reset can come from a firewall that rejects rather than drops: not proof of a way out.
        return {"reachable": False, "result": "refused"}
    except socket.gaierror as exc:
        return {"reachable": False, "result": "resolve_failed", "error": exc.strerror}
    except OSError as exc:
        if state.get("connected"):
            return {"reachable": False, "result": "no_answer", "answered_by": MIDDLEBOX, "error": str(exc)}
        return {"reachable": False, "result": "unreachable", "error": exc.strerror or str(exc)}
