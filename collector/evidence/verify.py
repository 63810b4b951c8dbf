"""Offline verification of an evidence bundle: signature, every file's digest, each point's hash chain.

Needs nothing but the zip and (preferably) the collector's public key; it never touches a store. Every
problem found is listed, each naming the file (and line) that broke, so a reviewer can say what is wrong.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from dataclasses import dataclass, field

from collector.evidence.chain import ChainWalk
from collector.evidence.keys import SigningKeyError, key_id, parse_public

SIGNED = ("manifest.json", "manifest.sig")


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reports: int = 0
    files: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def _signature(zf: zipfile.ZipFile, public_key, v: Verdict) -> dict | None:
    names = set(zf.namelist())
    for name in SIGNED:
        if name not in names:
            v.problems.append(f"{name}: missing from the bundle")
    if any(n not in names for n in SIGNED):
        return None
    data = zf.read("manifest.json")
    try:
        manifest = json.loads(data.decode("utf-8"))
        if not isinstance(manifest, dict):
            raise ValueError("not an object")
    except ValueError as exc:
        v.problems.append(f"manifest.json: not valid JSON ({exc})")
        manifest = None
    named = (manifest or {}).get("signing_key") or {}
    if public_key is None:
        try:
            public_key = parse_public(named.get("public_key") or "")
        except SigningKeyError:
            v.problems.append("manifest.json: names no usable signing key, and no --public-key was given")
            return manifest
        v.notes.append(f"signature checked against the key named inside the bundle (key id {key_id(public_key)}); "
                       "pass --public-key with the collector's published key to check who signed it")
    try:
        sig = base64.b64decode(zf.read("manifest.sig").strip(), validate=True)
        public_key.verify(sig, data)
    except Exception:  # InvalidSignature, bad base64 or length: all mean the same to a reviewer
        v.problems.append(f"manifest.sig: the signature does not verify over manifest.json with key "
                          f"{key_id(public_key)} (manifest.json or manifest.sig was changed, or another key "
                          f"signed it{'; the bundle names key ' + named['key_id'] if named.get('key_id') else ''})")
    return manifest


def _digests(zf: zipfile.ZipFile, manifest: dict, v: Verdict) -> None:
    listed = manifest.get("files") or {}
    names = [n for n in zf.namelist() if not n.endswith("/")]
    for name in names:
        if name not in listed and name not in SIGNED:
            v.problems.append(f"{name}: in the bundle but not listed in manifest.json")
    for name, meta in sorted(listed.items()):
        if name not in names:
            v.problems.append(f"{name}: listed in manifest.json but missing from the bundle")
            continue
        sha = hashlib.sha256()
        try:
            with zf.open(name) as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    sha.update(chunk)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:  # a corrupted member fails its CRC check
            v.problems.append(f"{name}: cannot be read from the zip ({exc})")
            continue
        v.files += 1
        if sha.hexdigest() != (meta or {}).get("sha256"):
            v.problems.append(f"{name}: SHA-256 {sha.hexdigest()[:16]}… differs from manifest.json "
                              f"({str((meta or {}).get('sha256'))[:16]}…): the file was changed")


def _chain(zf: zipfile.ZipFile, entry: dict, v: Verdict) -> None:
    code = entry.get("code")
    name = f"points/{code}/reports.jsonl"
    if name not in zf.namelist():
        v.problems.append(f"{name}: missing from the bundle")
        return
    walk = ChainWalk()
    try:
        with zf.open(name) as fh:
            for n, raw in enumerate(fh, start=1):
                try:
                    row = json.loads(raw.decode("utf-8"))
                    walk.feed(n, row.get("report_id"), row["prev_digest"], row["digest"], row["body"])
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    v.problems.append(f"{name} line {n}: not a report line ({type(exc).__name__}: {exc})")
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        v.problems.append(f"{name}: cannot be read from the zip ({exc})")
        return
    v.reports += walk.reports
    for b in walk.breaks:
        v.problems.append(f"{name} line {b['line']} (report {b['report_id']}): hash chain broken: {b['problem']}")
    if walk.break_count > len(walk.breaks):
        v.problems.append(f"{name}: {walk.break_count - len(walk.breaks)} more hash-chain breaks")
    declared = entry.get("chain") or {}
    for key, got in (("reports", walk.reports), ("tail", walk.tail), ("head", walk.head)):
        if declared.get(key) != got:
            v.problems.append(f"{name}: chain {key} is {got!r} but manifest.json says {declared.get(key)!r}")
    if declared.get("break_count"):
        v.notes.append(f"point {code}: the exporter found {declared['break_count']} hash-chain break(s) in the "
                       "stored history and recorded them in manifest.json and the sheet")


def verify_bundle(path, public_key=None) -> Verdict:
    """Check a bundle; ``public_key`` is an Ed25519 public key object (None: the key the bundle names)."""
    v = Verdict()
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        v.problems.append(f"{path}: not a readable zip file ({exc})")
        return v
    with zf:
        manifest = _signature(zf, public_key, v)
        if manifest is None:
            return v
        _digests(zf, manifest, v)
        points = manifest.get("points") or []
        if not points:
            v.problems.append("manifest.json: lists no points")
        for entry in points:
            _chain(zf, entry, v)
    return v
