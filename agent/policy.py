"""The collector's signed policy, as the agent checks it: pinned keys, the envelope, the digest.

The wire contract (the policy issue, fixed by the lead): the collector answers ``GET /api/v1/agent/policy`` with
an *envelope* ``{"payload": "<base64 of the payload JSON bytes>", "signatures": [{"key_id", "signature"}]}``;
the payload is ``{"format": 1, "point", "digest", "issued_at", "policy", "announce_keys"?}``. An envelope is
accepted only when

1. a signature by a key the agent pins (``<state_dir>/policy_keys.json``, from the enrolment answer) verifies
   over the exact payload bytes (agent/ed25519.py),
2. ``payload.point`` is this agent's point code, and
3. the digest recomputed from ``policy`` equals ``payload.digest``,

in that order: nothing in a payload is believed before its signature is. The payload's ``issued_at`` must be
an RFC 3339 time: the agent keeps the newest one it accepted (``<state_dir>/policy_mark.json``) and refuses a
payload issued before it (:func:`refuse_if_older`), so an older signed envelope cannot be replayed or restored. Keys in ``announce_keys`` of an
accepted payload are pinned from then on (key rotation: the new key is announced under the old one's
signature). Standard library only: this runs on the agent.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from agent import ed25519

ALGORITHM = "Ed25519"
FORMAT = 1
MAX_ENVELOPE_BYTES = 1024 * 1024
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")

# Why a policy was refused: the reason key (logged, in the result's details) and what the county staff read.
BAD_SIGNATURE, OTHER_POINT, DIGEST_MISMATCH, MALFORMED, UNUSABLE, NO_KEYS, OLDER, MARK_UNREADABLE = (
    "bad_signature", "other_point", "digest_mismatch", "malformed", "unusable", "no_keys", "older",
    "mark_unreadable")
REASON_CN = {
    BAD_SIGNATURE: "签名校验失败（不是采集端签发的，或内容已被改动）",
    OTHER_POINT: "策略属于其他服务点",
    DIGEST_MISMATCH: "策略内容与其摘要不符",
    MALFORMED: "策略格式错误",
    UNUSABLE: "本代理无法执行该策略",
    NO_KEYS: "本机未保存采集端的签名公钥（请重新注册）",
    OLDER: "这是一份旧策略，签发时间早于本机已接受过的策略（疑为重放或恢复的旧策略）",
    MARK_UNREADABLE: "本机记录的已接受策略签发时间无法读取（请重新注册）",
}
WITH_DETAIL = (UNUSABLE, OLDER)  # their detail is Chinese text the county staff read


class PolicyRefused(Exception):
    def __init__(self, reason: str, detail: str = ""):
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}" if detail else reason)

    @property
    def message_cn(self) -> str:
        return REASON_CN[self.reason] + (f"：{self.detail}" if self.detail and self.reason in WITH_DETAIL else "")


@dataclass(frozen=True)
class Key:
    key_id: str
    public_key: bytes

    def to_json(self) -> dict:
        return {"algorithm": ALGORITHM, "key_id": self.key_id,
                "public_key": base64.b64encode(self.public_key).decode("ascii")}


def key_id_of(public_key: bytes) -> str:
    """The collector's name for a key (collector/evidence/keys.py ``key_id``): 16 hex digits of its SHA-256."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def parse_keys(items, where: str = "policy_keys") -> list[Key]:
    """Key objects of the contract, each checked: Ed25519, 32 bytes that are a usable point, the matching key_id.
    Raises ValueError naming the item and what is wrong."""
    if not isinstance(items, list):
        raise ValueError(f"{where}: expected a list of keys")
    keys = []
    for i, item in enumerate(items):
        at = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{at}: expected an object")
        if item.get("algorithm") != ALGORITHM:
            raise ValueError(f"{at}.algorithm: {item.get('algorithm')!r} is not {ALGORITHM}")
        try:
            raw = base64.b64decode(str(item.get("public_key", "")), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{at}.public_key: not base64") from None
        if len(raw) != 32 or not ed25519.valid_public_key(raw):
            raise ValueError(f"{at}.public_key: not an Ed25519 public key")
        if item.get("key_id") != key_id_of(raw):
            raise ValueError(f"{at}.key_id: {item.get('key_id')!r} is not the id of this key ({key_id_of(raw)})")
        keys.append(Key(item["key_id"], raw))
    return keys


def merge_keys(pinned: list[Key], more: list[Key]) -> list[Key]:
    return [*pinned, *(k for k in more if k not in pinned)]


def canonical_digest(policy) -> str:
    data = json.dumps(policy, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Accepted:
    """An envelope that passed: its exact bytes (what is cached), the policy and what the payload says of it."""

    raw: bytes
    policy: dict
    digest: str
    issued_at: str
    key_id: str
    announce: list[Key] = field(default_factory=list)


def _b64(value, what: str) -> bytes:
    if not isinstance(value, str):
        raise PolicyRefused(MALFORMED, f"{what} is not base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise PolicyRefused(MALFORMED, f"{what} is not base64") from None


def issued_time(text) -> datetime | None:
    """``issued_at`` as an aware UTC time; None when it is not an RFC 3339 time with a zone."""
    if not isinstance(text, str) or not text:
        return None
    try:
        ts = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        return None
    return ts.astimezone(timezone.utc) if ts.tzinfo is not None else None


def refuse_if_older(accepted: Accepted, mark: str | None) -> None:
    """Refuse a payload issued before ``mark``, the newest ``issued_at`` this agent accepted (None: none yet)."""
    if mark is None:
        return
    newest = issued_time(mark)
    if newest is None:
        raise PolicyRefused(MARK_UNREADABLE, f"the recorded issued_at {mark!r} is not a time")
    if issued_time(accepted.issued_at) < newest:
        raise PolicyRefused(OLDER, f"该策略签发于 {accepted.issued_at}，本机已接受过签发于 {mark} 的策略")


def verify_envelope(raw: bytes, keys: list[Key], point_code: str) -> Accepted:
    """The accepted policy of an envelope, or :class:`PolicyRefused` saying why not."""
    if not keys:
        raise PolicyRefused(NO_KEYS)
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise PolicyRefused(MALFORMED, f"envelope is over {MAX_ENVELOPE_BYTES} bytes")
    try:
        envelope = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise PolicyRefused(MALFORMED, "envelope is not JSON") from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("signatures"), list):
        raise PolicyRefused(MALFORMED, "envelope needs payload and signatures")
    payload = _b64(envelope.get("payload"), "payload")
    by_key = None
    for sig in envelope["signatures"]:
        if not isinstance(sig, dict):
            continue
        candidates = [k for k in keys if k.key_id == sig.get("key_id")]
        if not candidates:
            continue
        signature = _b64(sig.get("signature"), "signature")
        by_key = next((k for k in candidates if ed25519.verify(k.public_key, payload, signature)), None)
        if by_key:
            break
    if by_key is None:
        raise PolicyRefused(BAD_SIGNATURE)
    # Signed by the collector from here on: what follows is believed, but still checked.
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise PolicyRefused(MALFORMED, "payload is not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise PolicyRefused(MALFORMED, f"payload format is not {FORMAT}")
    if doc.get("point") != point_code:
        raise PolicyRefused(OTHER_POINT, f"payload is for point {doc.get('point')!r}, this is {point_code}")
    policy, digest = doc.get("policy"), doc.get("digest")
    if not isinstance(policy, dict) or not isinstance(digest, str) or not DIGEST.match(digest):
        raise PolicyRefused(MALFORMED, "payload needs a policy mapping and a sha256 digest")
    if canonical_digest(policy) != digest:
        raise PolicyRefused(DIGEST_MISMATCH, f"payload says {digest}, the policy is {canonical_digest(policy)}")
    if issued_time(doc.get("issued_at")) is None:
        raise PolicyRefused(MALFORMED, "payload needs issued_at, an RFC 3339 time with its zone")
    try:
        announce = parse_keys(doc.get("announce_keys") or [], "announce_keys")
    except ValueError as exc:
        raise PolicyRefused(MALFORMED, str(exc)) from None
    return Accepted(raw=raw, policy=policy, digest=digest, issued_at=doc["issued_at"],
                    key_id=by_key.key_id, announce=announce)
