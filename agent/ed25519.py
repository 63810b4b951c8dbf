"""Ed25519 signature *verification* (RFC 8032 §5.1), in pure Python, for the agent's signed policy.

The agent only ever checks signatures made by its collector (once per policy fetch and once per load of the
cached policy), so a few milliseconds of big-integer arithmetic cost nothing, and the agent does not need
``cryptography`` or PyNaCl (collector extras). Signing is not here: the collector signs with ``cryptography``.

What is refused, each as RFC 8032 §5.1.7 says or stricter:
- a public key or an R that does not decode to a point on the curve (§5.1.3: y ≥ p, no square root for x,
  or x = 0 with the sign bit set), so a non-canonical encoding of y never passes;
- S ≥ L (the non-canonical, malleable S);
- a public key of small order (its [8]A is the identity): under such a key an S of 0 "verifies" any
  message, so it is no key at all;
- anything else where the group equation [8][S]B = [8]R + [8][k]A fails (k = SHA-512(R ‖ A ‖ M) mod L).

Points are in extended twisted-Edwards coordinates (X, Y, Z, T) with x = X/Z, y = Y/Z, x·y = T/Z; the
addition and doubling formulas are those of §5.1.4.
"""

from __future__ import annotations

import hashlib

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493  # the order of the base point
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)

Point = tuple  # (X, Y, Z, T)
IDENTITY: Point = (0, 1, 1, 0)


def _add(p: Point, q: Point) -> Point:
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = 2 * t1 * t2 * D % P
    d = 2 * z1 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _double(p: Point) -> Point:
    x1, y1, z1, _ = p
    a = x1 * x1 % P
    b = y1 * y1 % P
    c = 2 * z1 * z1 % P
    h = a + b
    e = h - (x1 + y1) * (x1 + y1)
    g = a - b
    f = c + g
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _negate(p: Point) -> Point:
    x, y, z, t = p
    return (-x % P, y, z, -t % P)


def _is_identity(p: Point) -> bool:
    x, y, z, _ = p
    return x % P == 0 and (y - z) % P == 0


def _times8(p: Point) -> Point:
    return _double(_double(_double(p)))


def decode_point(data: bytes) -> Point | None:
    """RFC 8032 §5.1.3; None when the 32 bytes are not the canonical encoding of a curve point."""
    if len(data) != 32:
        return None
    value = int.from_bytes(data, "little")
    sign = value >> 255
    y = value & ((1 << 255) - 1)
    if y >= P:
        return None
    u = (y * y - 1) % P
    v = (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    vxx = v * x * x % P
    if vxx == u:
        pass
    elif vxx == (-u) % P:
        x = x * SQRT_M1 % P
    else:
        return None  # no square root: not on the curve
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = P - x
    return (x, y, 1, x * y % P)


def _base_point() -> Point:
    y = 4 * pow(5, P - 2, P) % P
    point = decode_point(y.to_bytes(32, "little"))
    assert point is not None
    return point


B = _base_point()


def _double_scalar(s: int, b: Point, k: int, a: Point) -> Point:
    """[s]b + [k]a in one pass of doublings (Straus–Shamir)."""
    both = _add(b, a)
    acc = IDENTITY
    for i in range(max(s.bit_length(), k.bit_length()) - 1, -1, -1):
        acc = _double(acc)
        bits = ((s >> i) & 1, (k >> i) & 1)
        if bits == (1, 1):
            acc = _add(acc, both)
        elif bits[0]:
            acc = _add(acc, b)
        elif bits[1]:
            acc = _add(acc, a)
    return acc


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message`` under the raw 32-byte ``public_key``."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    a = decode_point(public_key)
    if a is None or _is_identity(_times8(a)):
        return False
    r = decode_point(signature[:32])
    if r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= L:
        return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public_key + message).digest(), "little") % L
    # [S]B - [k]A - R must be of small order: [8]([S]B - [k]A - R) is the identity.
    check = _add(_double_scalar(s, B, k, _negate(a)), _negate(r))
    return _is_identity(_times8(check))


def valid_public_key(public_key: bytes) -> bool:
    """Whether 32 bytes are a usable Ed25519 public key: a curve point of more than small order."""
    a = decode_point(public_key) if len(public_key) == 32 else None
    return a is not None and not _is_identity(_times8(a))
