"""The keys that sign agents' policies: the collector's Ed25519 signing key (the one that signs evidence,
collector/evidence/keys.py), and its rotation.

Rotation in two steps, so that no agent is left pinning only a key nobody signs with:

1. ``policy keys next`` makes the next key (``evidence-signing-key.next.pem``, 0600). From then on every
   policy payload, still signed by the current key, carries ``announce_keys: [next]``; agents that accept it
   pin the next key too. Enrolment answers list both keys.
2. ``policy keys switch`` makes the next key the current one (the old one is kept as
   ``evidence-signing-key.<key id>.retired.pem``, for reviewers' old bundles). It is refused while a point
   with a policy has not fetched since step 1, unless ``--force``.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from collector.evidence import keys

NEXT_FILE = "evidence-signing-key.next.pem"


def next_path(data_dir) -> Path:
    return Path(data_dir) / NEXT_FILE


def key_object(public_key) -> dict:
    """A key as the wire contract names it (enrolment's policy_keys, a payload's announce_keys)."""
    return {"algorithm": "Ed25519", "key_id": keys.key_id(public_key), "public_key": keys.public_b64(public_key)}


def _load(path: Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise keys.SigningKeyError(f"{path}: cannot read the next signing key: {exc}") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise keys.SigningKeyError(f"{path}: not an Ed25519 private key")
    return key


def next_key(data_dir):
    path = next_path(data_dir)
    return _load(path) if path.exists() else None


def policy_keys(data_dir) -> list[dict]:
    """The keys an enrolling agent pins: the current one, and the next one while a rotation is under way."""
    out = [key_object(keys.load_or_create(data_dir).public_key())]
    upcoming = next_key(data_dir)
    if upcoming is not None:
        out.append(key_object(upcoming.public_key()))
    return out


def envelope(data_dir, payload: dict) -> tuple[bytes, bool]:
    """The signed answer (JSON bytes) for a payload, and whether it announces a next key. The payload gains
    ``announce_keys`` while a rotation is under way."""
    current = keys.load_or_create(data_dir)
    upcoming = next_key(data_dir)
    if upcoming is not None:
        payload = {**payload, "announce_keys": [key_object(upcoming.public_key())]}
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    signature = {"key_id": keys.key_id(current.public_key()),
                 "signature": base64.b64encode(current.sign(data)).decode("ascii")}
    body = {"payload": base64.b64encode(data).decode("ascii"), "signatures": [signature]}
    return json.dumps(body, separators=(",", ":")).encode("ascii"), upcoming is not None


def make_next(data_dir) -> dict:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    keys.load_or_create(data_dir)  # a rotation starts from a current key
    path = next_path(data_dir)
    if path.exists():
        raise FileExistsError(path)  # one is under way
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    # Written whole beside it, then linked into place: a policy fetch reading the next key meanwhile sees
    # either no file or the whole key, never an empty one (which failed the fetch with a 500).
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)  # FileExistsError: another was made meanwhile
        os.utime(path)  # announced from now (announced_since): every fetch from this moment on carries it
    finally:
        tmp.unlink(missing_ok=True)
    return key_object(key.public_key())


def announced_since(data_dir) -> datetime | None:
    path = next_path(data_dir)
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc) if path.exists() else None


def switch(data_dir) -> tuple[dict, dict]:
    """Sign with the next key from now on; returns (retired key, new current key)."""
    upcoming = next_key(data_dir)
    if upcoming is None:
        raise keys.SigningKeyError("no next key: run `policy keys next` first, and switch once agents fetched")
    current = keys.load_or_create(data_dir)
    current_path = keys.key_path(data_dir)
    retired = Path(data_dir) / f"evidence-signing-key.{keys.key_id(current.public_key())}.retired.pem"
    os.link(current_path, retired)  # kept, never overwritten (FileExistsError if it somehow exists)
    os.replace(next_path(data_dir), current_path)
    return key_object(current.public_key()), key_object(upcoming.public_key())


def run_keys(args, settings) -> int:
    from collector.cli.output import say
    from collector.store import policies

    data_dir = settings.data_dir
    try:
        if args.step == "list":
            for k in policy_keys(data_dir):
                say("{}\t{}\t{}", k["key_id"], k["algorithm"], k["public_key"])
            since = announced_since(data_dir)
            if since is not None:
                say("rotation under way: the next key is announced since {}", since.isoformat())
            return 0
        if args.step == "next":
            try:
                k = make_next(data_dir)
            except FileExistsError:
                say("错误：a next key exists already ({}); switch to it first", next_path(data_dir), err=True)
                return 1
            say("next key {} made; agents pin it at their next policy fetch. Switch with `policy keys switch` "
                "once every point has fetched (`policy keys switch` checks).", k["key_id"])
            return 0
        since = announced_since(data_dir)
        if since is None:
            say("错误：no next key: run `policy keys next` first", err=True)
            return 1
        store = settings.open_store()
        try:
            waiting = policies.unfetched_since(store, since)
        finally:
            store.close()
        if waiting and not args.force:
            say("refused: {} points have not fetched their policy since the next key was announced ({}); their "
                "agents would refuse policies signed by it. Wait, or --force.", len(waiting),
                ", ".join(waiting[:20]), err=True)
            return 1
        old, new = switch(data_dir)
        say("signing with {} from now on; {} retired (kept beside it for old evidence bundles)",
            new["key_id"], old["key_id"])
        return 0
    except keys.SigningKeyError as exc:
        say("错误：{}", exc, err=True)
        return 1
