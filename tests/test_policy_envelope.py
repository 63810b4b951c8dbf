"""agent/policy.py's acceptance rules held one by one, in process: the envelope contract of its docstring and
docs/en/operations.md ("Its policy", "Central policy"): a signature by a pinned key over the exact payload
bytes first, then this point, then the digest (``sha256:`` + SHA-256 of the canonical JSON: sorted keys, no
spaces, UTF-8), an RFC 3339 ``issued_at`` with its zone, announced keys checked like pinned ones, and no
payload issued before the newest one accepted. Expected digests and key ids are computed here from those
definitions with hashlib, not with the module's own functions."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519 as crypto

from agent import policy as pol
from tests.policy_collector import key_object

POINT = "620102001001"
POLICY = {"usage": {"allowed_ports": [22], "forbidden_software": "none"}, "名称": "县级平台"}
# docs/en/operations.md: sorted keys, no spaces, UTF-8 (the Chinese as itself, not \u escapes)
CANONICAL = '{"usage":{"allowed_ports":[22],"forbidden_software":"none"},"名称":"县级平台"}'.encode()
DIGEST = "sha256:" + hashlib.sha256(CANONICAL).hexdigest()
ISSUED = "2026-03-01T08:00:00Z"


def raw_public(key) -> bytes:
    return base64.b64decode(key_object(key)["public_key"])


def payload_doc(**changes) -> dict:
    doc = {"format": 1, "point": POINT, "digest": DIGEST, "issued_at": ISSUED, "policy": POLICY}
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not ...}


def signed(payload, *signers, signatures=None) -> bytes:
    """An envelope over ``payload`` (a dict, or bytes as they are) signed by each of ``signers``."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode()
    sigs = [{"key_id": key_object(k)["key_id"], "signature": base64.b64encode(k.sign(data)).decode()}
            for k in signers]
    return json.dumps({"payload": base64.b64encode(data).decode(), "signatures": signatures or sigs}).encode()


@pytest.fixture
def key():
    return crypto.Ed25519PrivateKey.generate()


@pytest.fixture
def keys(key):
    return pol.parse_keys([key_object(key)])


def refused(raw, keys, point=POINT) -> pol.PolicyRefused:
    with pytest.raises(pol.PolicyRefused) as info:
        pol.verify_envelope(raw, keys, point)
    return info.value


def test_the_digest_is_sha256_of_the_canonical_json():
    assert pol.canonical_digest(POLICY) == DIGEST
    assert pol.canonical_digest({"b": 1, "a": [1, 2]}) == "sha256:" + hashlib.sha256(b'{"a":[1,2],"b":1}').hexdigest()


def test_an_accepted_envelope_carries_its_bytes_policy_digest_time_and_signing_key(key, keys):
    raw = signed(payload_doc(), key)
    accepted = pol.verify_envelope(raw, keys, POINT)
    assert (accepted.raw, accepted.policy, accepted.digest, accepted.issued_at) == (raw, POLICY, DIGEST, ISSUED)
    assert accepted.key_id == hashlib.sha256(raw_public(key)).hexdigest()[:16] and accepted.announce == []


def test_one_good_signature_among_others_is_enough_and_a_later_bad_one_does_not_undo_it(key, keys):
    other = crypto.Ed25519PrivateKey.generate()
    data = json.dumps(payload_doc()).encode()
    good = {"key_id": keys[0].key_id, "signature": base64.b64encode(key.sign(data)).decode()}
    bad = {"key_id": keys[0].key_id, "signature": base64.b64encode(other.sign(data)).decode()}
    unknown = {"key_id": key_object(other)["key_id"], "signature": base64.b64encode(other.sign(data)).decode()}
    for sigs in (["not an object", unknown, good], [good, bad], [bad, good], [good, unknown]):
        raw = json.dumps({"payload": base64.b64encode(data).decode(), "signatures": sigs}).encode()
        assert pol.verify_envelope(raw, keys, POINT).key_id == keys[0].key_id, sigs


def test_the_signing_key_is_named_among_several_pinned(key):
    first, second = crypto.Ed25519PrivateKey.generate(), key
    pinned = pol.parse_keys([key_object(first), key_object(second)])
    assert pol.verify_envelope(signed(payload_doc(), second), pinned, POINT).key_id == pinned[1].key_id


@pytest.mark.parametrize("envelope,detail", [
    (b"[1, 2]", "envelope needs payload and signatures"),
    (b'{"payload": "e30=", "signatures": {}}', "envelope needs payload and signatures"),
    (b'{"payload": "e30="}', "envelope needs payload and signatures"),
    (b'{"payload": 7, "signatures": []}', "payload is not base64 text"),
    (b'{"payload": "not base64!", "signatures": []}', "payload is not base64"),
    (b"\xff\xfe", "envelope is not JSON"),
    (b"[" * 100_000, "envelope is not JSON"),
])
def test_a_malformed_envelope_is_refused_before_any_signature(keys, envelope, detail):
    problem = refused(envelope, keys)
    assert (problem.reason, problem.detail) == (pol.MALFORMED, detail)


def test_a_pinned_keys_signature_that_is_not_base64_is_malformed(keys):
    sigs = [{"key_id": keys[0].key_id, "signature": "@@@"}]
    problem = refused(signed(payload_doc(), signatures=sigs), keys)
    assert (problem.reason, problem.detail) == (pol.MALFORMED, "signature is not base64")


def test_an_envelope_over_one_mib_is_refused_unread(key, keys):
    raw = signed(payload_doc(), key)
    limit = 1024 * 1024  # MAX_ENVELOPE_BYTES: 1 MiB
    at_limit = raw + b" " * (limit - len(raw))  # JSON allows the trailing spaces
    assert pol.verify_envelope(at_limit, keys, POINT).policy == POLICY
    problem = refused(at_limit + b" ", keys)
    assert (problem.reason, problem.detail) == (pol.MALFORMED, f"envelope is over {limit} bytes")


@pytest.mark.parametrize("payload,reason,detail", [
    (b"\xff not utf-8", pol.MALFORMED, "payload is not JSON"),
    (b"[" * 100_000, pol.MALFORMED, "payload is not JSON"),
    (b"[]", pol.MALFORMED, "payload format is not 1"),
    (payload_doc(format=2), pol.MALFORMED, "payload format is not 1"),
    (payload_doc(format=...), pol.MALFORMED, "payload format is not 1"),
    (payload_doc(point="620102001999"), pol.OTHER_POINT,
     f"payload is for point '620102001999', this is {POINT}"),
    (payload_doc(point=...), pol.OTHER_POINT, f"payload is for point None, this is {POINT}"),
    (payload_doc(policy=[1]), pol.MALFORMED, "payload needs a policy mapping and a sha256 digest"),
    (payload_doc(digest=None), pol.MALFORMED, "payload needs a policy mapping and a sha256 digest"),
    (payload_doc(digest=DIGEST.upper()), pol.MALFORMED, "payload needs a policy mapping and a sha256 digest"),
    (payload_doc(digest=DIGEST + "0"), pol.MALFORMED, "payload needs a policy mapping and a sha256 digest"),
    (payload_doc(digest="x" + DIGEST), pol.MALFORMED, "payload needs a policy mapping and a sha256 digest"),
    (payload_doc(digest="sha256:" + "0" * 64), pol.DIGEST_MISMATCH,
     f"payload says sha256:{'0' * 64}, the policy is {DIGEST}"),
    (payload_doc(issued_at=...), pol.MALFORMED, "payload needs issued_at, an RFC 3339 time with its zone"),
    (payload_doc(issued_at="2026-03-01T08:00:00"), pol.MALFORMED,
     "payload needs issued_at, an RFC 3339 time with its zone"),
    (payload_doc(issued_at="yesterday"), pol.MALFORMED, "payload needs issued_at, an RFC 3339 time with its zone"),
    (payload_doc(announce_keys=[{"algorithm": "RSA"}]), pol.MALFORMED,
     "announce_keys[0].algorithm: 'RSA' is not Ed25519"),
])
def test_a_signed_payload_is_still_checked_in_the_contracts_order(key, keys, payload, reason, detail):
    problem = refused(signed(payload, key), keys)
    assert (problem.reason, problem.detail) == (reason, detail)


def test_the_same_payloads_unsigned_say_bad_signature_first(keys):
    for payload in (b"\xff", payload_doc(point="620102001999"), payload_doc(digest="sha256:" + "0" * 64)):
        assert refused(signed(payload), keys).reason == pol.BAD_SIGNATURE


def test_announced_keys_are_parsed_and_handed_on(key, keys):
    new = crypto.Ed25519PrivateKey.generate()
    accepted = pol.verify_envelope(signed(payload_doc(announce_keys=[key_object(new)]), key), keys, POINT)
    assert accepted.announce == [pol.Key(key_object(new)["key_id"], raw_public(new))]
    assert pol.verify_envelope(signed(payload_doc(announce_keys=[]), key), keys, POINT).announce == []


def test_key_ids_are_sixteen_hex_digits_of_the_keys_sha256(key):
    raw = raw_public(key)
    assert pol.key_id_of(raw) == hashlib.sha256(raw).hexdigest()[:16]
    k = pol.Key(pol.key_id_of(raw), raw)
    assert k.to_json() == {"algorithm": "Ed25519", "key_id": hashlib.sha256(raw).hexdigest()[:16],
                           "public_key": base64.b64encode(raw).decode()}
    assert pol.parse_keys([k.to_json()]) == [k]


def test_bad_key_lists_name_the_item_and_what_is_wrong(key):
    good = key_object(key)
    cases = [
        ("not a list", "where: expected a list of keys"),
        ([good, "x"], "where[1]: expected an object"),
        ([{**good, "public_key": "***"}], "where[0].public_key: not base64"),
        ([{k: v for k, v in good.items() if k != "public_key"}], "where[0].public_key: not an Ed25519"),
        ([{**good, "public_key": base64.b64encode(bytes(33)).decode()}], "where[0].public_key: not an Ed25519"),
        ([{**good, "key_id": "abc"}], f"where[0].key_id: 'abc' is not the id of this key ({good['key_id']})"),
        ([{k: v for k, v in good.items() if k != "algorithm"}], "where[0].algorithm: None is not Ed25519"),
    ]
    for items, message in cases:
        with pytest.raises(ValueError) as info:
            pol.parse_keys(items, "where")
        assert str(info.value).startswith(message), (items, str(info.value))
    with pytest.raises(ValueError, match=r"^policy_keys: expected a list"):
        pol.parse_keys({})


def test_merged_keys_keep_the_pinned_first_and_add_each_new_one_once(key):
    a, b, c = (pol.parse_keys([key_object(k)])[0] for k in (key, crypto.Ed25519PrivateKey.generate(),
                                                              crypto.Ed25519PrivateKey.generate()))
    assert pol.merge_keys([a, b], [b, c]) == [a, b, c] and pol.merge_keys([a], []) == [a]


@pytest.mark.parametrize("text,expected", [
    ("2026-03-01T08:00:00Z", "2026-03-01T08:00:00+00:00"),
    ("2026-03-01T08:00:00z", "2026-03-01T08:00:00+00:00"),
    ("2026-03-01T16:00:00+08:00", "2026-03-01T08:00:00+00:00"),
    ("2026-03-01T08:00:00", None),
    ("", None),
    (None, None),
    (1772352000, None),
    ("Z", None),
])
def test_issued_at_is_an_rfc3339_time_with_its_zone_read_as_utc(text, expected):
    got = pol.issued_time(text)
    assert (got.isoformat() if got else None) == expected


def _accepted(issued_at: str) -> pol.Accepted:
    return pol.Accepted(raw=b"", policy={}, digest=DIGEST, issued_at=issued_at, key_id="k")


def test_a_payload_issued_before_the_mark_is_refused_and_one_issued_at_or_after_it_is_not():
    pol.refuse_if_older(_accepted("2000-01-01T00:00:00Z"), None)  # no mark yet: anything goes
    pol.refuse_if_older(_accepted(ISSUED), ISSUED)  # the same policy again
    pol.refuse_if_older(_accepted("2026-03-01T16:00:00+08:00"), ISSUED)  # the same instant, another zone
    pol.refuse_if_older(_accepted("2026-03-01T08:00:01Z"), ISSUED)
    with pytest.raises(pol.PolicyRefused) as older:
        pol.refuse_if_older(_accepted("2026-03-01T07:59:59Z"), ISSUED)
    assert older.value.reason == pol.OLDER
    assert older.value.detail == f"该策略签发于 2026-03-01T07:59:59Z，本机已接受过签发于 {ISSUED} 的策略"
    with pytest.raises(pol.PolicyRefused) as unreadable:
        pol.refuse_if_older(_accepted(ISSUED), "garbage")
    assert (unreadable.value.reason, unreadable.value.detail) == (
        pol.MARK_UNREADABLE, "the recorded issued_at 'garbage' is not a time")


def test_what_county_staff_read_adds_the_detail_only_where_it_is_chinese():
    older = pol.PolicyRefused(pol.OLDER, "该策略签发于 甲")
    assert older.message_cn.startswith("这是一份旧策略") and older.message_cn.endswith("：该策略签发于 甲")
    assert str(older) == "older: 该策略签发于 甲"
    unusable = pol.PolicyRefused(pol.UNUSABLE, "某字段")
    assert unusable.message_cn.endswith("：某字段")
    malformed = pol.PolicyRefused(pol.MALFORMED, "payload is not JSON")  # English detail: logged, not shown
    assert "payload" not in malformed.message_cn and malformed.message_cn == pol.REASON_CN[pol.MALFORMED]
    bare = pol.PolicyRefused(pol.NO_KEYS)
    assert str(bare) == "no_keys" and bare.detail == "" and "：" not in bare.message_cn
    assert "：" not in pol.PolicyRefused(pol.OLDER).message_cn  # no detail, no colon
