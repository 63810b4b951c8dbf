"""The collector's Ed25519 evidence-signing key, kept in the data directory.

Created on first use with 0600 permissions (``O_EXCL``, so two processes starting at once cannot both write
one); the public half is published at ``/api/v1/evidence/public-key`` and printed by the CLI, and reviewers
keep it to check bundles offline.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

KEY_FILE = "evidence-signing-key.pem"


class SigningKeyError(Exception):
    """A key that cannot be read or used; the message names the file."""


def _crypto():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return serialization, ed25519


def key_path(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / KEY_FILE


def load_or_create(data_dir: str | os.PathLike):
    """The private key of this collector; generated and written 0600 the first time."""
    serialization, ed25519 = _crypto()
    path = key_path(data_dir)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = ed25519.Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process won the race; read theirs
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise SigningKeyError(f"{path}: cannot read the evidence signing key: {exc}") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SigningKeyError(f"{path}: not an Ed25519 private key")
    return key


def raw_public(public_key) -> bytes:
    serialization, _ = _crypto()
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_pem(public_key) -> str:
    serialization, _ = _crypto()
    return public_key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def key_id(public_key) -> str:
    """A short name for a public key: the first 16 hex digits of SHA-256 over its raw 32 bytes."""
    return hashlib.sha256(raw_public(public_key)).hexdigest()[:16]


def public_b64(public_key) -> str:
    return base64.b64encode(raw_public(public_key)).decode("ascii")


def parse_public(text: str | bytes):
    """A public key given as PEM (what the API and the CLI print) or as base64 of the raw 32 bytes."""
    serialization, ed25519 = _crypto()
    data = text.encode("ascii", "replace") if isinstance(text, str) else text
    data = data.strip()
    try:
        if data.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(data)
        else:
            key = ed25519.Ed25519PublicKey.from_public_bytes(base64.b64decode(data, validate=True))
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"not an Ed25519 public key (PEM or base64 of 32 bytes): {exc}") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise SigningKeyError("not an Ed25519 public key")
    return key


def load_public_file(path: str | os.PathLike):
    try:
        return parse_public(Path(path).read_bytes())
    except OSError as exc:
        raise SigningKeyError(f"{path}: cannot read the public key: {exc}") from None
    except SigningKeyError as exc:
        raise SigningKeyError(f"{path}: {exc}") from None
