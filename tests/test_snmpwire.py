"""agent/checks/devices/snmpwire.py: the BER of the PDUs a poll sends, and what a response must match.

Byte strings below are written from X.690 / RFC 3416 by hand (the comments take them apart), not from the
encoder's output. The recordings-level comparison with pysnmp is tests/test_devices_snmp.py.
"""

from __future__ import annotations

import socket
import threading

from agent.checks.devices import snmp
from agent.checks.devices import snmpwire as wire

# GetRequest, v2c, community "public", request id 1, one varbind sysDescr.0 = NULL.
GET_SYSDESCR = bytes.fromhex(
    "3026"            # SEQUENCE, 38 octets
    "020101"          # version 1 (= v2c)
    "0406" + b"public".hex() +
    "a019"            # GetRequest PDU, 25 octets
    "020101"          # request id 1
    "020100" "020100"  # error status, error index
    "300e" "300c"     # varbind list, varbind
    "06082b06010201010100"  # 1.3.6.1.2.1.1.1.0
    "0500")           # NULL


def test_get_request_bytes():
    assert wire.encode_request(1, b"public", wire.GET, 1, ["1.3.6.1.2.1.1.1.0"]) == GET_SYSDESCR


def test_integers_and_oid_arcs_encode_minimally():
    assert wire._int(0) == b"\x02\x01\x00"
    assert wire._int(127) == b"\x02\x01\x7f"
    assert wire._int(128) == b"\x02\x02\x00\x80"  # a leading zero keeps it positive
    assert wire._int(-1) == b"\x02\x01\xff"
    assert wire._oid("1.3.6.1.4.1.32473") == bytes.fromhex("06082b0601040181fd59")  # 32473 = 1·128² + 125·128 + 89


def response(rid: int, binds: bytes, community: bytes = b"public", status: int = 0) -> bytes:
    body = wire._int(rid) + wire._int(status) + wire._int(0) + wire._tlv(0x30, binds)
    return wire._tlv(0x30, wire._int(1) + wire._tlv(0x04, community) + wire._tlv(0xA2, body))


def bind(oid: str, tag: int, raw: bytes) -> bytes:
    return wire._tlv(0x30, wire._oid(oid) + wire._tlv(tag, raw))


def test_values_decode_as_the_pysnmp_path_gave_them():
    binds = (bind("1.3.6.1.2.1.1.1.0", 0x04, "打印机".encode("gb18030"))
             + bind("1.3.6.1.2.1.1.2.0", 0x06, bytes.fromhex("2b0601040181fd59"))
             + bind("1.3.6.1.2.1.1.3.0", 0x43, bytes.fromhex("00ffffffff"))  # TimeTicks 2^32-1
             + bind("1.3.6.1.2.1.43.11.1.1.9.1.1", 0x02, b"\xfe")  # INTEGER -2 (Printer-MIB "unknown")
             + bind("1.3.6.1.2.1.43.11.1.1.9.1.2", 0x42, b"\xff")  # Gauge32 sent without its leading zero
             + bind("1.3.6.1.2.1.1.5.0", 0x81, b""))  # noSuchInstance
    version, community, rid, status, _i, out = wire.decode_response(response(7, binds))
    assert (version, community, rid, status) == (1, b"public", 7, 0)
    assert out == [("1.3.6.1.2.1.1.1.0", "打印机".encode("gb18030")), ("1.3.6.1.2.1.1.2.0", "1.3.6.1.4.1.32473"),
                   ("1.3.6.1.2.1.1.3.0", 2**32 - 1), ("1.3.6.1.2.1.43.11.1.1.9.1.1", -2),
                   ("1.3.6.1.2.1.43.11.1.1.9.1.2", 255), ("1.3.6.1.2.1.1.5.0", None)]


def test_only_the_matching_response_counts():
    """A stray datagram, another community's answer or another request id must not be taken for the
    device's answer; the right one after them is."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))

    def serve():
        data, peer = srv.recvfrom(65535)
        rid = int.from_bytes(data[17:21], "big")  # 30 L 020101 0406 public a0 L 0204 <request id>
        good = bind("1.3.6.1.2.1.1.1.0", 0x04, b"real printer")
        srv.sendto(b"\x30\x03garbage", peer)
        srv.sendto(response(rid, bind("1.3.6.1.2.1.1.1.0", 0x04, b"forged"), community=b"other"), peer)
        srv.sendto(response(rid + 1, bind("1.3.6.1.2.1.1.1.0", 0x04, b"forged")), peer)
        srv.sendto(response(rid, good), peer)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    with wire.Session("127.0.0.1", srv.getsockname()[1], "2c", "public", 2.0) as s:
        s._next_id = 0x01000000 - 1  # the next id, 0x01000000, encodes as 4 octets
        got = s.exchange({"sys": (wire.GET, ["1.3.6.1.2.1.1.1.0"], 0, 0)}, retries=0, deadline=1e12)
    t.join(5)
    srv.close()
    assert got == {"sys": (0, [("1.3.6.1.2.1.1.1.0", b"real printer")])}


def test_no_answer_is_one_timeout_and_says_so():
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    try:
        res = snmp.poll(snmp.SnmpConfig("127.0.0.1", sink.getsockname()[1], printer_mib=True), 0.2, budget=5)
    finally:
        sink.close()
    assert not res.answered and res.error == wire.NO_RESPONSE
    assert res.elapsed_s < 5  # one timeout, not the budget (a count, not a speed: 0.2 s vs 5 s)


def raw_bind(oid_body: bytes) -> bytes:
    return wire._tlv(0x30, wire._tlv(wire.OID, oid_body) + b"\x05\x00")


HUGE_ARC = b"\x2b" + b"\xff" * 8000 + b"\x01"  # one sub-identifier of 56 007 bits: str() of it is a ValueError
HOSTILE_OIDS = {
    "huge arc": HUGE_ARC,
    "6-byte arc": b"\x2b" + b"\x81\x80\x80\x80\x80\x00",  # 2**35: six bytes
    "arc 2**32": b"\x2b" + b"\x90\x80\x80\x80\x00",  # five bytes, one over the largest (2**32 - 1)
    "129 arcs": b"\x2b" + b"\x01" * 128,
    "unterminated arc": b"\x2b\x06\x81",
}


def test_hostile_oids_are_ber_errors_and_the_largest_legal_ones_decode():
    for name, body in HOSTILE_OIDS.items():
        try:
            wire.decode_response(response(1, raw_bind(body)))
        except wire.BerError:
            continue
        raise AssertionError(f"{name}: decoded")
    binds = raw_bind(b"\x2b" + b"\x8f\xff\xff\xff\x7f" + b"\x01" * 126)  # 2**32 - 1, 128 arcs in all
    oid = wire.decode_response(response(1, binds))[5][0][0]
    assert oid == "1.3." + str(2**32 - 1) + ".1" * 126


def test_a_hostile_datagram_does_not_end_the_poll():
    """A datagram with a huge OID arc, sent before the device's answer, is ignored like any stray one."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))

    def serve():
        data, peer = srv.recvfrom(65535)
        rid = int.from_bytes(data[17:21], "big")
        srv.sendto(response(rid, raw_bind(HUGE_ARC)), peer)
        srv.sendto(response(rid, bind("1.3.6.1.2.1.1.1.0", 0x04, b"real printer")), peer)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    with wire.Session("127.0.0.1", srv.getsockname()[1], "2c", "public", 2.0) as s:
        s._next_id = 0x01000000 - 1
        got = s.exchange({"sys": (wire.GET, ["1.3.6.1.2.1.1.1.0"], 0, 0)}, retries=0, deadline=1e12)
    t.join(5)
    srv.close()
    assert got == {"sys": (0, [("1.3.6.1.2.1.1.1.0", b"real printer")])}
