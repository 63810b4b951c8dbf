"""SNMP v1/v2c on the wire without pysnmp: BER for the few PDUs a poll sends, over one UDP socket.

A printer poll is one GET of the system group and a handful of table walks; for community-based SNMP
that is a few dozen lines of BER. pysnmp (with pyasn1, cryptography and, when installed, pysmi's MIB
compiler) cost the agent about 30 MB resident and most of its CPU per poll, so it is loaded only for
SNMPv3 (USM authentication and privacy), see :mod:`agent.checks.devices.snmp`.

Values come back as the pysnmp path gave them: OCTET STRING, IpAddress and Opaque as ``bytes``, the
integer types as ``int``, an OBJECT IDENTIFIER as dotted text, and the v2c exceptions (noSuchObject,
noSuchInstance, endOfMibView) as ``None``. A response counts only when it matches what was sent: version,
community, request id, from the peer the socket is connected to.
"""

from __future__ import annotations

import os
import select
import socket
import time
from dataclasses import dataclass, field

# BER tags (X.690) and SNMP's application types (RFC 2578) and PDUs (RFC 3416).
INTEGER, OCTET_STRING, NULL, OID, SEQUENCE = 0x02, 0x04, 0x05, 0x06, 0x30
UNSIGNED_TYPES = {0x41, 0x42, 0x43, 0x46, 0x47}  # Counter32, Gauge32, TimeTicks, Counter64, UInteger32
BYTES_TYPES = {OCTET_STRING, 0x40, 0x44, 0x45}  # OCTET STRING, IpAddress, Opaque, NsapAddress
EXCEPTIONS = {0x80, 0x81, 0x82}  # noSuchObject, noSuchInstance, endOfMibView
GET, GET_NEXT, RESPONSE, GET_BULK = 0xA0, 0xA1, 0xA2, 0xA5
ERROR_NAMES = ("noError", "tooBig", "noSuchName", "badValue", "readOnly", "genErr", "noAccess", "wrongType",
               "wrongLength", "wrongEncoding", "wrongValue", "noCreation", "inconsistentValue",
               "resourceUnavailable", "commitFailed", "undoFailed", "authorizationError", "notWritable",
               "inconsistentName")
MAX_DATAGRAM = 65535
NO_RESPONSE = "No SNMP response received before timeout"


@dataclass
class PollResult:
    """What one poll of a device saw, whichever SNMP version read it."""

    answered: bool
    system: dict[str, object] = field(default_factory=dict)
    tables: dict[str, dict[str, object]] = field(default_factory=dict)
    error: str = ""
    incomplete: list[str] = field(default_factory=list)  # tables the deadline cut short
    elapsed_s: float = 0.0


def advance(cursor: dict[str, str], binds, rows: dict[str, object]) -> None:
    """Fold one GETNEXT/GETBULK answer for the columns in ``cursor`` into ``rows``; move the cursor on.

    A column leaves ``cursor`` when it ended (left its subtree, an exception value) or made no progress
    (guards against agents that loop)."""
    cols = list(cursor)
    last: dict[str, str] = {}
    ended: set[str] = set()
    for i, (oid, value) in enumerate(binds):
        col = cols[i % len(cols)]
        if col in ended:
            continue
        if value is None or not oid.startswith(col + "."):
            ended.add(col)
            continue
        rows[oid] = value
        last[col] = oid
    for col in cols:
        if col in ended or col not in last or last[col] == cursor[col]:
            del cursor[col]
        else:
            cursor[col] = last[col]


class BerError(ValueError):
    """A datagram that is not the BER an SNMP response must be."""


# -- encoding -------------------------------------------------------------------------------------------


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes((tag, n)) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + body


def _int(value: int) -> bytes:
    return _tlv(INTEGER, value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True))


def _oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.strip(".").split(".")]
    if len(arcs) < 2:
        raise ValueError(f"OID too short: {dotted!r}")
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return _tlv(OID, bytes(out))


def encode_request(version: int, community: bytes, pdu: int, request_id: int, oids, a: int = 0,
                   b: int = 0) -> bytes:
    """A message; ``a``/``b`` are error status/index, or non-repeaters/max-repetitions for GETBULK."""
    binds = b"".join(_tlv(SEQUENCE, _oid(o) + b"\x05\x00") for o in oids)
    body = _int(request_id) + _int(a) + _int(b) + _tlv(SEQUENCE, binds)
    return _tlv(SEQUENCE, _int(version) + _tlv(OCTET_STRING, community) + _tlv(pdu, body))


# -- decoding -------------------------------------------------------------------------------------------


def _read(buf: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of value, end of value) of the TLV at ``pos``."""
    if pos + 2 > len(buf):
        raise BerError("truncated")
    tag, n = buf[pos], buf[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if not 0 < k <= 4 or pos + k > len(buf):
            raise BerError("bad length")
        n, pos = int.from_bytes(buf[pos:pos + k], "big"), pos + k
    if pos + n > len(buf):
        raise BerError("truncated")
    return tag, pos, pos + n


def _expect(buf: bytes, pos: int, tag: int) -> tuple[int, int]:
    t, start, end = _read(buf, pos)
    if t != tag:
        raise BerError(f"expected tag 0x{tag:02x}, got 0x{t:02x}")
    return start, end


MAX_OID_ARCS = 128  # RFC 2578: at most 128 sub-identifiers, each below 2**32 (at most 5 bytes)


def _decode_oid(raw: bytes) -> str:
    arcs, arc, size = [], 0, 0
    for byte in raw:
        arc, size = (arc << 7) | (byte & 0x7F), size + 1
        if size > 5 or arc >= 2 ** 32:
            raise BerError("OID sub-identifier over 2**32")
        if not byte & 0x80:
            arcs.append(arc)
            arc, size = 0, 0
            if len(arcs) > MAX_OID_ARCS:
                raise BerError(f"OID over {MAX_OID_ARCS} sub-identifiers")
    if size:
        raise BerError("OID ends inside a sub-identifier")
    if not arcs:
        raise BerError("empty OID")
    first = min(arcs[0] // 40, 2)
    return ".".join(map(str, (first, arcs[0] - 40 * first, *arcs[1:])))


def _value(tag: int, raw: bytes):
    if tag == INTEGER:
        return int.from_bytes(raw, "big", signed=True)
    if tag in UNSIGNED_TYPES:
        return int.from_bytes(raw, "big")
    if tag in BYTES_TYPES:
        return bytes(raw)
    if tag == OID:
        return _decode_oid(raw)
    if tag in EXCEPTIONS:
        return None
    if tag == NULL:
        return ""
    raise BerError(f"unknown value type 0x{tag:02x}")


def decode_response(buf: bytes) -> tuple[int, bytes, int, int, int, list[tuple[str, object]]]:
    """(version, community, request id, error status, error index, [(oid, value)]) of a Response."""
    msg_start, end = _expect(buf, 0, SEQUENCE)
    s, e = _expect(buf, msg_start, INTEGER)
    version = int.from_bytes(buf[s:e], "big", signed=True)
    s2, e2 = _expect(buf, e, OCTET_STRING)
    community = buf[s2:e2]
    pdu_start, pdu_end = _expect(buf, e2, RESPONSE)
    fields = []
    pos = pdu_start
    for _ in range(3):
        s, e = _expect(buf, pos, INTEGER)
        fields.append(int.from_bytes(buf[s:e], "big", signed=True))
        pos = e
    list_start, list_end = _expect(buf, pos, SEQUENCE)
    binds, pos = [], list_start
    while pos < list_end:
        bs, be = _expect(buf, pos, SEQUENCE)
        os_, oe = _expect(buf, bs, OID)
        tag, vs, ve = _read(buf, oe)
        binds.append((_decode_oid(buf[os_:oe]), _value(tag, buf[vs:ve])))
        pos = be
    if pdu_end > end or list_end > pdu_end:
        raise BerError("inconsistent lengths")
    return version, community, fields[0], fields[1], fields[2], binds


def error_name(status: int) -> str:
    return ERROR_NAMES[status] if 0 <= status < len(ERROR_NAMES) else f"error status {status}"


# -- one session: requests matched by id over one connected UDP socket ------------------------------------


class Session:
    """Community SNMP to one agent. :meth:`exchange` runs several requests at once and returns their
    responses (or an error text each), resending each one ``retries`` times after ``timeout``."""

    def __init__(self, host: str, port: int, version: str, community: str, timeout: float):
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0]
        self.sock = socket.socket(family, kind, proto)
        self.sock.connect(addr)
        self.version = 0 if version == "1" else 1
        self.community = community.encode()
        self.timeout = timeout
        self._next_id = int.from_bytes(os.urandom(3), "big")

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def request_id(self) -> int:
        self._next_id = (self._next_id + 1) & 0x7FFFFFFF
        return self._next_id

    def exchange(self, requests: dict, retries: int, deadline: float) -> dict:
        """``{key: (pdu, oids, a, b)}`` -> ``{key: (error_status, binds) | str}``; keys left out: deadline."""
        pending: dict[int, list] = {}  # request id -> [key, datagram, sent_at, tries left]
        for key, (pdu, oids, a, b) in requests.items():
            rid = self.request_id()
            pending[rid] = [key, encode_request(self.version, self.community, pdu, rid, oids, a, b), 0.0, retries + 1]
        out: dict = {}
        while pending:
            now = time.monotonic()
            for rid, p in list(pending.items()):
                if now - p[2] >= self.timeout:
                    if p[3] == 0:
                        out[p[0]] = NO_RESPONSE
                        del pending[rid]
                        continue
                    p[2], p[3] = now, p[3] - 1
                    try:
                        self.sock.send(p[1])
                    except OSError as exc:  # unreachable network, refused port (ICMP seen): no answer
                        out[p[0]] = f"send failed: {exc}"
                        del pending[rid]
            if not pending or now >= deadline:
                break
            wake = min(min(p[2] for p in pending.values()) + self.timeout, deadline)
            ready, _, _ = select.select([self.sock], [], [], max(0.0, wake - time.monotonic()))
            if ready:
                self._receive(pending, out)
        return out

    def _receive(self, pending: dict, out: dict) -> None:
        try:
            data = self.sock.recv(MAX_DATAGRAM)
        except OSError:  # ICMP port unreachable on a connected socket: the retry/timeout decides
            return
        try:
            version, community, rid, status, _index, binds = decode_response(data)
        except (BerError, IndexError, ValueError):  # ValueError: defensive, a decode must never end the poll
            return  # not ours or not SNMP: ignored, as a stray datagram must be
        if rid in pending and version == self.version and community == self.community:
            out[pending.pop(rid)[0]] = (status, binds)
