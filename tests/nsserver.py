"""A small real server for the namespace tests, run inside a namespace with `ip netns exec`.

It listens on the given TCP ports (accepting and closing), answers DNS A queries over UDP for the given
names (REFUSED for any other name, so a resolver moves on to its next server, as a private DNS server
without forwarders does), and serves HTTPS `GET /health` with the given certificate. Prints "ready" once
every socket is bound.
"""

from __future__ import annotations

import argparse
import http.server
import socket
import ssl
import struct
import sys
import threading


def tcp_listener(addr: str, port: int) -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port))
    srv.listen(64)

    def loop() -> None:
        while True:
            conn, _ = srv.accept()
            conn.close()

    threading.Thread(target=loop, daemon=True).start()


def dns_answer(query: bytes, records: dict[str, str]) -> bytes:
    """Answer one DNS query: an A record when the name is known, REFUSED otherwise."""
    tid, flags = struct.unpack("!HH", query[:4])
    pos, labels = 12, []
    while query[pos]:
        n = query[pos]
        labels.append(query[pos + 1:pos + 1 + n].decode("ascii").lower())
        pos += 1 + n
    qtype, _qclass = struct.unpack("!HH", query[pos + 1:pos + 5])
    question = query[12:pos + 5]
    name = ".".join(labels)
    rd = flags & 0x0100
    if name not in records:
        return struct.pack("!HHHHHH", tid, 0x8000 | rd | 0x0080 | 5, 1, 0, 0, 0) + question  # REFUSED
    if qtype != 1:  # known name, no record of that type (AAAA): NOERROR with no answer
        return struct.pack("!HHHHHH", tid, 0x8400 | rd | 0x0080, 1, 0, 0, 0) + question
    answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 30, 4) + socket.inet_aton(records[name])
    return struct.pack("!HHHHHH", tid, 0x8400 | rd | 0x0080, 1, 1, 0, 0) + question + answer


def dns_server(addr: str, records: dict[str, str]) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((addr, 53))

    def loop() -> None:
        while True:
            data, peer = sock.recvfrom(512)
            try:
                sock.sendto(dns_answer(data, records), peer)
            except (IndexError, struct.error, UnicodeDecodeError):
                continue

    threading.Thread(target=loop, daemon=True).start()


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = b"ok" if self.path == "/health" else b"missing"
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def https_server(addr: str, port: int, cert: str, key: str) -> None:
    srv = http.server.ThreadingHTTPServer((addr, port), Health)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", default="0.0.0.0")
    ap.add_argument("--tcp", type=int, action="append", default=[])
    ap.add_argument("--dns", action="append", default=[], help="name=ipv4")
    ap.add_argument("--https", help="port:certfile:keyfile")
    args = ap.parse_args()
    for port in args.tcp:
        tcp_listener(args.addr, port)
    if args.dns:
        dns_server(args.addr, dict(item.lower().split("=", 1) for item in args.dns))
    if args.https:
        port, cert, key = args.https.split(":", 2)
        https_server(args.addr, int(port), cert, key)
    print("ready", flush=True)
    sys.stdin.read()  # run until the test closes our stdin (or kills us)


if __name__ == "__main__":
    main()
