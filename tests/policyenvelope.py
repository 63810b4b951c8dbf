"""The agent's half of the policy contract, written from the contract alone (not from the collector's code),
so collector tests check the answers the way an agent will: signature by a pinned key over the exact payload
bytes, the payload's point, and the digest recomputed from the policy."""

from __future__ import annotations

import base64
import hashlib
import json


class Refused(Exception):
    pass


def policy_digest(policy: dict) -> str:
    canonical = json.dumps(policy, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def accept(envelope: dict, pinned: list[dict], point: str) -> dict:
    """The payload of an envelope the agent would accept; Refused naming why otherwise."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        data = base64.b64decode(envelope["payload"], validate=True)
        signatures = list(envelope["signatures"])
    except (KeyError, TypeError, ValueError) as exc:
        raise Refused(f"malformed envelope: {exc}") from None
    keys = {k["key_id"]: Ed25519PublicKey.from_public_bytes(base64.b64decode(k["public_key"])) for k in pinned}
    for sig in signatures:
        key = keys.get(sig.get("key_id"))
        if key is None:
            continue
        try:
            key.verify(base64.b64decode(sig["signature"]), data)
        except (InvalidSignature, ValueError):
            continue
        break
    else:
        raise Refused("bad signature: no pinned key signed this payload")
    payload = json.loads(data.decode("utf-8"))
    if payload.get("point") != point:
        raise Refused(f"other point: {payload.get('point')}")
    if policy_digest(payload["policy"]) != payload["digest"]:
        raise Refused("digest mismatch")
    return payload
