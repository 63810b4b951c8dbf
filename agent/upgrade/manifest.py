"""A release's signed manifest, as the agent checks it before a byte of the release is run.

The envelope has the policy envelope's shape (agent/policy.py): ``{"payload": base64(payload JSON bytes),
"signatures": [{"key_id", "signature"}]}``; the payload is ``{"format": 1, "kind": "pointwatch-agent-release",
"version", "platform", "file", "size", "sha256", "signed_at"}``. Accepted only when a release key pinned at
enrolment (``<state_dir>/release_keys.json``, never the collector's policy keys: a collector compromise must not
be able to sign a release) signed the exact payload bytes, and the payload names the version the policy asks
for and this agent's platform. Nothing in a payload is believed before its signature is.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

from agent import ed25519
from agent.upgrade.state import BAD_SIGNATURE, WRONG_VERSION
from agent.versions import canonical_or_none

KIND = "pointwatch-agent-release"
FORMAT = 1
MAX_MANIFEST_BYTES = 64 * 1024
MAX_RELEASE_BYTES = 512 * 1024 * 1024
SHA256 = re.compile(r"^[0-9a-f]{64}$")
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")


class ManifestRefused(Exception):
    """``garbled``: the answer is no manifest envelope at all (not JSON, no signatures list): what a captive
    portal or a misconfigured proxy gives, so the network's fault (retried), never the release's."""

    def __init__(self, reason: str, detail: str, garbled: bool = False):
        self.reason, self.detail, self.garbled = reason, detail, garbled
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True)
class Release:
    version: str
    platform: str
    file: str
    size: int
    sha256: str
    signed_at: str
    key_id: str


def _b64(value, what: str) -> bytes:
    try:
        if not isinstance(value, str):
            raise TypeError(what)
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise ManifestRefused(BAD_SIGNATURE, f"{what} is not base64") from None


def verify_manifest(raw: bytes, keys, version: str, platform: str) -> Release:
    """The release ``raw`` describes, or :class:`ManifestRefused` saying why it may not run here."""
    if not keys:
        raise ManifestRefused(BAD_SIGNATURE, "no release key is pinned (enrol again)")
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestRefused(BAD_SIGNATURE, f"manifest is over {MAX_MANIFEST_BYTES} bytes")
    try:
        envelope = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ManifestRefused(BAD_SIGNATURE, "manifest is not JSON", garbled=True) from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("signatures"), list):
        raise ManifestRefused(BAD_SIGNATURE, "manifest needs payload and signatures", garbled=True)
    payload = _b64(envelope.get("payload"), "payload")
    signer = None
    for sig in envelope["signatures"]:
        if not isinstance(sig, dict):
            continue
        candidates = [k for k in keys if k.key_id == sig.get("key_id")]
        if candidates:
            signature = _b64(sig.get("signature"), "signature")
            signer = next((k for k in candidates if ed25519.verify(k.public_key, payload, signature)), None)
            if signer:
                break
    if signer is None:
        raise ManifestRefused(BAD_SIGNATURE, "no pinned release key signed this manifest")
    # Signed by a release key from here on: believed, but still checked.
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ManifestRefused(BAD_SIGNATURE, "signed payload is not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("kind") != KIND:
        raise ManifestRefused(BAD_SIGNATURE, f"signed payload is not a {KIND} manifest of format {FORMAT}")
    if canonical_or_none(doc.get("version")) != canonical_or_none(version) or canonical_or_none(version) is None:
        raise ManifestRefused(WRONG_VERSION, f"manifest is for version {doc.get('version')!r}, the policy names {version}")
    if doc.get("platform") != platform:
        raise ManifestRefused(WRONG_VERSION, f"manifest is for platform {doc.get('platform')!r}, this agent is {platform}")
    name, size, sha256 = doc.get("file"), doc.get("size"), doc.get("sha256")
    if not isinstance(name, str) or not FILE_NAME.match(name) or name.endswith(".part"):
        raise ManifestRefused(BAD_SIGNATURE, f"signed file name {name!r} is not a plain file name")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= MAX_RELEASE_BYTES:
        raise ManifestRefused(BAD_SIGNATURE, f"signed size {size!r} is not 1 to {MAX_RELEASE_BYTES} bytes")
    if not isinstance(sha256, str) or not SHA256.match(sha256):
        raise ManifestRefused(BAD_SIGNATURE, "signed sha256 is not 64 lowercase hex digits")
    return Release(version=version, platform=platform, file=name, size=size, sha256=sha256,
                   signed_at=str(doc.get("signed_at") or ""), key_id=signer.key_id)
