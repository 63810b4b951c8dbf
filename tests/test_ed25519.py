"""agent/ed25519.py, the agent's own Ed25519 verify: RFC 8032 §7.1's vectors, signatures made by `cryptography`
(the collector's signer), and every kind of bad input it must refuse."""

from __future__ import annotations

import hashlib
import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519 as crypto_ed25519

from agent import ed25519

# RFC 8032 §7.1 "Test Vectors for Ed25519": TEST 1, TEST 2, TEST 3 and TEST SHA(abc) (secret, public, message,
# signature). The secret keys are kept so the test can show the transcription is right: Ed25519 is deterministic.
RFC8032 = [
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd2"
     "5bf5f0595bbe24655141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b"
     "2eaeb4302aeeb00d291612bb0c00"),
    ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c"
     "15e9716ed28dc027beceea1ec40a"),
    ("833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
     "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf", hashlib.sha512(b"abc").hexdigest(),
     "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca"
     "179c138ac17ad9bef1177331a704"),
]


def raw_public(key: crypto_ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def flip(data: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


@pytest.mark.parametrize("secret,public,message,signature", RFC8032)
def test_rfc8032_vectors_verify(secret, public, message, signature):
    pub, msg, sig = bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)
    signer = crypto_ed25519.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret))
    assert raw_public(signer) == pub and signer.sign(msg) == sig  # the vector is transcribed right
    assert ed25519.verify(pub, msg, sig)
    assert not ed25519.verify(pub, msg + b"\x00", sig)
    assert not ed25519.verify(pub, flip(msg, 0) if msg else b"\x01", sig)


def test_signatures_made_by_cryptography_verify_and_any_edit_is_refused():
    for size in (0, 1, 31, 64, 1000, 20_000):
        key = crypto_ed25519.Ed25519PrivateKey.generate()
        pub, msg = raw_public(key), os.urandom(size)
        sig = key.sign(msg)
        assert ed25519.verify(pub, msg, sig)
        if msg:
            assert not ed25519.verify(pub, flip(msg, size // 2, 3), sig), "edited message"
        for index in (0, 17, 31, 32, 45, 63):
            assert not ed25519.verify(pub, msg, flip(sig, index, 5)), f"edited signature byte {index}"
        other = raw_public(crypto_ed25519.Ed25519PrivateKey.generate())
        assert not ed25519.verify(other, msg, sig), "another key"
        assert not ed25519.verify(flip(pub, 4), msg, sig), "an edited key"


def test_non_canonical_s_is_refused_although_it_satisfies_the_equation():
    key = crypto_ed25519.Ed25519PrivateKey.generate()
    pub, msg = raw_public(key), b"policy payload"
    sig = key.sign(msg)
    s = int.from_bytes(sig[32:], "little")
    malleable = sig[:32] + (s + ed25519.L).to_bytes(32, "little")  # the same point equation, S >= L
    assert ed25519.verify(pub, msg, sig)
    assert not ed25519.verify(pub, msg, malleable)


def _not_on_curve() -> bytes:
    """The encoding of a y for which no x exists (x² = (y²-1)/(dy²+1) has no root)."""
    for y in range(2, 200):
        data = y.to_bytes(32, "little")
        if ed25519.decode_point(data) is None:
            return data
    raise AssertionError("no off-curve y below 200")


def test_points_not_on_the_curve_are_refused_as_key_and_as_r():
    key = crypto_ed25519.Ed25519PrivateKey.generate()
    pub, msg = raw_public(key), b"m"
    sig = key.sign(msg)
    off = _not_on_curve()
    assert not ed25519.verify(off, msg, sig)
    assert not ed25519.verify(pub, msg, off + sig[32:])
    assert not ed25519.valid_public_key(off)


def test_non_canonical_point_encodings_are_refused():
    # y = p + 1 encodes the same y as 1 (the identity) but is not the canonical encoding; x = 0 with the
    # sign bit set (the "negative zero") is not canonical either.
    assert ed25519.decode_point((ed25519.P + 1).to_bytes(32, "little")) is None
    assert ed25519.decode_point(ed25519.P.to_bytes(32, "little")) is None  # §5.1.3: y >= p fails, y = p too
    assert ed25519.decode_point((1 | (1 << 255)).to_bytes(32, "little")) is None
    assert ed25519.decode_point((1).to_bytes(32, "little")) == ed25519.IDENTITY


def test_a_small_order_key_is_no_key_even_for_the_signature_that_fits_every_message():
    identity = (1).to_bytes(32, "little")
    forged = identity + bytes(32)  # R = identity, S = 0: [8][0]B == [8]R + [8][k]A for any message
    for msg in (b"", b"any policy at all"):
        assert not ed25519.verify(identity, msg, forged)
    assert not ed25519.valid_public_key(identity)


def test_wrong_lengths_are_refused():
    key = crypto_ed25519.Ed25519PrivateKey.generate()
    pub, sig = raw_public(key), key.sign(b"x")
    assert ed25519.verify(pub, b"x", sig)
    assert not ed25519.verify(pub[:31], b"x", sig)
    assert not ed25519.verify(pub + b"\x00", b"x", sig)
    assert not ed25519.verify(pub, b"x", sig[:63])
    assert not ed25519.verify(pub, b"x", sig + b"\x00")
    assert not ed25519.verify(pub, b"x", b"")


# RFC 8032 §5.1: the base point B = (x, 4/5) with x even ("positive"); its encoding is 0x58 then 31 × 0x66.
BASE_X = 15112221349535400772501151409588531511454012693041857206046113283949847762202
BASE_Y = 46316835694926478169428394003475163141307993866256225615783033603165251855960


def test_the_base_point_is_rfc8032s():
    expected = (BASE_X, BASE_Y, 1, BASE_X * BASE_Y % ed25519.P)
    assert ed25519._base_point() == expected
    assert expected == ed25519.B  # what verify uses: computed once, at import
    assert ed25519.decode_point(bytes.fromhex("58" + "66" * 31)) == expected


# The encodings of the points of small order (the curve's cofactor is 8): the order-1, -2, -4 and -8 points,
# as libsodium's ed25519 small-order list gives them. None of them is a key (RFC 8032 §5.1.7 with [8]: an S
# of 0 and R = identity would verify every message under each).
SMALL_ORDER = [
    "0100000000000000000000000000000000000000000000000000000000000000",  # order 1 (the identity)
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # order 2: y = p - 1
    "0000000000000000000000000000000000000000000000000000000000000000",  # order 4: y = 0, x = √-1
    "0000000000000000000000000000000000000000000000000000000000000080",  # order 4: y = 0, x = -√-1
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",  # order 8 (the other x)
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",  # order 8 (the other x)
]


@pytest.mark.parametrize("encoded", SMALL_ORDER)
def test_no_point_of_small_order_is_a_key(encoded):
    point = bytes.fromhex(encoded)
    assert ed25519.decode_point(point) is not None  # on the curve: refused for its order, not its encoding
    assert not ed25519.valid_public_key(point)
    forged = bytes.fromhex(SMALL_ORDER[0]) + bytes(32)  # R = identity, S = 0
    assert not ed25519.verify(point, b"any policy at all", forged)


def test_the_rfc8032_public_keys_are_usable_keys():
    for _, public, _, _ in RFC8032:
        assert ed25519.valid_public_key(bytes.fromhex(public))
    assert not ed25519.valid_public_key(bytes.fromhex(RFC8032[0][1])[:31])
