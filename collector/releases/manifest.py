"""The release manifest: what the offline release key signs, and how the collector checks it before storing.

Envelope (the policy envelope's shape): ``{"payload": base64(payload JSON), "signatures": [{key_id,
signature}]}``; payload ``{"format": 1, "kind": "pointwatch-agent-release", "version", "platform", "file",
"size", "sha256", "signed_at"}``. A manifest is accepted in this order, nothing in the payload believed
before its signature is: a signature by a configured release key over the exact payload bytes, then the
payload's format, kind, version and platform (each against what the admin said it is), then the file's size
and SHA-256 against the payload. The collector holds public release keys only; the private key stays on the
offline machine that runs ``agent-release keygen`` and ``sign``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from agent.policy import Key, issued_time, key_id_of
from agent.versions import VERSION_RE, canonical, canonical_or_none
from agent.vocabulary import RELEASE_PLATFORMS

FORMAT = 1
KIND = "pointwatch-agent-release"
MAX_MANIFEST_BYTES = 64 * 1024
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")  # a plain name: the agent writes it to disk
CHUNK = 1024 * 1024


class ReleaseRefused(Exception):
    """A manifest or file the collector will not store; ``reason`` a stable key, the message Chinese."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Manifest:
    version: str
    platform: str
    file: str
    size: int
    sha256: str
    signed_at: str
    key_id: str


def file_digest(path: str | os.PathLike) -> tuple[int, str]:
    """(size, sha256 hex) of a file, read in chunks."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


# -- offline: the release key and signing -------------------------------------------------------------
def keygen(out: str | os.PathLike) -> dict:
    """Write a new Ed25519 release key to ``out`` (0600, never over an existing file); its key object."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # FileExistsError: never overwrite a key
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return key_object(_raw_public(key))


def _raw_public(private_key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_object(raw_public: bytes) -> dict:
    return Key(key_id_of(raw_public), raw_public).to_json()


def load_private(path: str | os.PathLike):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ReleaseRefused("bad_key", f"{path}：无法读取发布私钥（{exc}）") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ReleaseRefused("bad_key", f"{path}：不是 Ed25519 私钥")
    return key


def sign(path: str | os.PathLike, version: str, platform: str, private_key, now: datetime | None = None) -> bytes:
    """The signed manifest (envelope JSON bytes) of a release file; the version signed in canonical form."""
    version = check_version(version)
    check_platform(platform)
    name = Path(path).name
    if not FILE_NAME.match(name):
        raise ReleaseRefused("bad_file_name", f"文件名 {name!r} 不可用（只能含字母、数字和 . _ + -）")
    size, sha256 = file_digest(path)
    from agent.wire import rfc3339

    payload = {"format": FORMAT, "kind": KIND, "version": version, "platform": platform, "file": name,
               "size": size, "sha256": sha256, "signed_at": rfc3339(now or datetime.now(timezone.utc))}
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    signature = {"key_id": key_id_of(_raw_public(private_key)),
                 "signature": base64.b64encode(private_key.sign(data)).decode("ascii")}
    envelope = {"payload": base64.b64encode(data).decode("ascii"), "signatures": [signature]}
    return json.dumps(envelope, separators=(",", ":")).encode("ascii") + b"\n"


# -- on the collector: verification ---------------------------------------------------------------------
def check_version(version: str) -> str:
    """The version in canonical form (agent/versions.py: "0.2" is "0.2.0"), or ReleaseRefused."""
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise ReleaseRefused("bad_version", f"版本号 {version!r} 不合规（应为 2 到 4 段数字，如 0.2.1）")
    return canonical(version)


def check_platform(platform: str) -> None:
    if platform not in RELEASE_PLATFORMS:
        raise ReleaseRefused("bad_platform", f"平台 {platform!r} 未知（可选：{'、'.join(RELEASE_PLATFORMS)}）")


def _b64(value, what: str) -> bytes:
    try:
        return base64.b64decode(value if isinstance(value, str) else b"!", validate=True)
    except (binascii.Error, ValueError):
        raise ReleaseRefused("malformed", f"发布清单格式错误：{what} 不是 base64") from None


def _signed_payload(raw: bytes, keys: list[Key]) -> tuple[bytes, str]:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ed25519

    if not keys:
        raise ReleaseRefused("no_release_keys", "采集端未配置发布公钥（collector.yaml 的 agent_releases.public_keys），"
                                                "无法校验任何发布")
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ReleaseRefused("malformed", f"发布清单超过 {MAX_MANIFEST_BYTES} 字节")
    try:
        envelope = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ReleaseRefused("malformed", "发布清单不是 JSON") from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("signatures"), list):
        raise ReleaseRefused("malformed", "发布清单缺少 payload 或 signatures")
    payload = _b64(envelope.get("payload"), "payload")
    for sig in envelope["signatures"]:
        if not isinstance(sig, dict):
            continue
        for key in (k for k in keys if k.key_id == sig.get("key_id")):
            try:
                ed25519.Ed25519PublicKey.from_public_bytes(key.public_key).verify(
                    _b64(sig.get("signature"), "signature"), payload)
            except InvalidSignature:
                continue
            return payload, key.key_id
    named = ", ".join(str(s.get("key_id")) for s in envelope["signatures"] if isinstance(s, dict)) or "无"
    raise ReleaseRefused("bad_signature", f"发布清单的签名无法用已配置的发布公钥验证（清单签名的密钥：{named}；"
                                          f"已配置：{', '.join(k.key_id for k in keys)}）：未签名、签名密钥不受信任，"
                                          "或清单已被改动")


def verify(raw: bytes, keys: list[Key], version: str, platform: str) -> Manifest:
    """The manifest's signed payload, checked against what the admin says the release is (the file is
    checked by :func:`verify_file`)."""
    payload, key_id = _signed_payload(raw, keys)
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ReleaseRefused("malformed", "发布清单的 payload 不是 JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("kind") != KIND:
        raise ReleaseRefused("malformed", f"发布清单不是 {KIND} 第 {FORMAT} 版格式")
    version = check_version(version)
    if canonical_or_none(doc.get("version")) != version:
        raise ReleaseRefused("wrong_version", f"发布清单签的是版本 {doc.get('version')!r}，而不是 {version}")
    if doc.get("platform") != platform:
        raise ReleaseRefused("wrong_platform", f"发布清单签的是平台 {doc.get('platform')!r}，而不是 {platform}")
    check_platform(platform)
    name, size, sha256 = doc.get("file"), doc.get("size"), doc.get("sha256")
    if not isinstance(name, str) or not FILE_NAME.match(name):
        raise ReleaseRefused("malformed", f"发布清单中的文件名 {name!r} 不可用")
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ReleaseRefused("malformed", f"发布清单中的文件大小 {size!r} 不是正整数")
    if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ReleaseRefused("malformed", "发布清单中的 sha256 不是 64 位十六进制")
    if issued_time(doc.get("signed_at")) is None:
        raise ReleaseRefused("malformed", "发布清单中的 signed_at 不是带时区的 RFC 3339 时间")
    return Manifest(version, platform, name, size, sha256, doc["signed_at"], key_id)


def verify_file(manifest: Manifest, size: int, sha256: str) -> None:
    """The file (its measured size and digest) is the one the manifest signs."""
    if size != manifest.size:
        raise ReleaseRefused("size_mismatch", f"文件大小 {size} 字节与发布清单的 {manifest.size} 字节不符")
    if sha256 != manifest.sha256:
        raise ReleaseRefused("digest_mismatch", f"文件的 sha256 {sha256} 与发布清单的 {manifest.sha256} 不符"
                                                "（文件已被改动，或不是清单所签的文件）")
