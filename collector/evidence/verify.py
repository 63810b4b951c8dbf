"""Offline verification of an evidence bundle: signature, every file's digest, each point's hash chain.

Needs nothing but the zip and the collector's public key; it never touches a store. Every problem found is
listed, each naming the file (and line) that broke, so a reviewer can say what is wrong.

Without a trusted key (``--public-key``) a bundle is never "verified": the key named inside it is whatever
a forger who re-signed it put there. The checks still run against that key, to say what else is wrong.
The zip itself is held to the shape we write: one entry per name (Python reads the last copy, ``unzip``
extracts the first), no entry manifest.json does not list (directories included), and no bytes before,
between or after the entries (a zip read from its end tolerates anything prepended).
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field

from collector.evidence import zipshape
from collector.evidence.chain import ChainWalk
from collector.evidence.keys import SigningKeyError, key_id, parse_public
from collector.review.check import FORMAT as REVIEW_FORMAT
from collector.review.check import check_review

SIGNED = ("manifest.json", "manifest.sig")
# What reading a member of an edited zip raises: a bad CRC, a broken deflate stream, a header flag that now
# says "encrypted" (RuntimeError) or a compression method that does not exist (NotImplementedError).
UNREADABLE = (zipfile.BadZipFile, OSError, EOFError, zlib.error, RuntimeError, NotImplementedError)
NO_TRUSTED_KEY = ("no trusted key: the signature was checked only against the key named inside the bundle "
                  "(key id {kid}), which whoever re-signs a bundle chooses; pass the collector's published key: "
                  "evidence verify FILE --public-key collector.pem (GET /api/v1/evidence/public-key, or "
                  "`pointwatch-collector evidence public-key` on the collector)")


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    untrusted: str | None = None  # why the signature proves nothing (no key given), for the reader
    reports: int = 0
    files: int = 0
    trusted: bool = False  # checked against a key the caller gave, not the one inside the bundle
    kind: str = "evidence"  # evidence | review (a submitted review's bundle, collector/review/signed.py)

    @property
    def ok(self) -> bool:
        return not self.problems and self.trusted


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
        v.untrusted = NO_TRUSTED_KEY.format(kid=key_id(public_key))
    else:
        v.trusted = True
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
    names = zf.namelist()
    for name in sorted(set(names)):
        if name not in listed and name not in SIGNED:
            kind = "a directory entry" if name.endswith("/") else "in the bundle"
            v.problems.append(f"{name}: {kind} but not listed in manifest.json")
    for name, meta in sorted(listed.items()):
        if name not in names:
            v.problems.append(f"{name}: listed in manifest.json but missing from the bundle")
            continue
        sha = hashlib.sha256()
        try:
            with zf.open(name) as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    sha.update(chunk)
                if not zipshape.stream_complete(fh):
                    v.problems.append(f"{name}: its compressed data was edited (the deflate stream does not end "
                                      "where the entry does)")
        except UNREADABLE as exc:  # a corrupted member fails its CRC check
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
    except UNREADABLE as exc:
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


def _structure(zf: zipfile.ZipFile, path, v: Verdict) -> None:
    """One entry per name, and nothing in the file but the entries and their directory."""
    for name, n in sorted(Counter(zf.namelist()).items()):
        if n > 1:
            v.problems.append(f"{name}: {n} entries of this name in the zip (tools disagree on which one counts)")
    infos = sorted(zf.infolist(), key=lambda i: i.header_offset)
    with open(path, "rb") as fh:
        raw = fh.read()
    # zipfile adds the bytes found before the archive ("concat") to every offset it read, so its offsets are
    # where the records are in the file; ``shift`` is how far that is from where the zip itself says.
    shift = zf.start_dir - _central_dir_offset(raw)
    expected = 0
    for info in infos:
        start = info.header_offset
        if start != expected:
            where = "before the first entry" if expected == 0 else f"before {info.filename}"
            v.problems.append(f"{abs(start - expected)} bytes of unlisted data {where} (junk in the zip file)")
        expected = _entry_end(raw, start, info)
    if infos and expected != _central_dir_offset(raw) + max(shift, 0):
        v.problems.append(f"unlisted data after {infos[-1].filename} (junk in the zip file)")
    if zf.comment:
        v.problems.append(f"the zip carries a comment of {len(zf.comment)} bytes (we write none)")
    zipshape.check(raw, zf, v.problems)


def _central_dir_offset(raw: bytes) -> int:
    """Where the end-of-central-directory record says the central directory starts (Zip64 aware)."""
    eocd = raw.rfind(b"PK\x05\x06")
    offset = struct.unpack("<I", raw[eocd + 16:eocd + 20])[0] if eocd >= 0 else 0
    if offset == 0xFFFFFFFF:
        loc = raw.rfind(b"PK\x06\x06")
        offset = struct.unpack("<Q", raw[loc + 48:loc + 56])[0] if loc >= 0 else offset
    return offset


def _entry_end(raw: bytes, start: int, info: zipfile.ZipInfo) -> int:
    """The offset just past an entry: local header, name, extra field, data, and its data descriptor."""
    if raw[start:start + 4] != b"PK\x03\x04":
        return start
    name_len, extra_len = struct.unpack("<HH", raw[start + 26:start + 30])
    end = start + 30 + name_len + extra_len + info.compress_size
    if info.flag_bits & 0x08:  # a streamed entry: its sizes follow the data, 8-byte ones with a Zip64 extra
        extra = raw[start + 30 + name_len:start + 30 + name_len + extra_len]
        zip64 = any(header == 0x0001 for header in _extra_ids(extra))
        end += (4 if raw[end:end + 4] == b"PK\x07\x08" else 0) + (20 if zip64 else 12)
    return end


def _extra_ids(extra: bytes):
    i = 0
    while i + 4 <= len(extra):
        header, size = struct.unpack("<HH", extra[i:i + 4])
        yield header
        i += 4 + size


def verify_bundle(path, public_key=None) -> Verdict:
    """Check a bundle against ``public_key``, an Ed25519 public key object. None checks it against the key the
    bundle names, which proves nothing of who signed it: the verdict is then never ``ok``."""
    v = Verdict()
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        v.problems.append(f"{path}: not a readable zip file ({exc})")
        return v
    with zf:
        try:
            _check(zf, path, public_key, v)
        except UNREADABLE as exc:  # manifest.json or .sig itself
            v.problems.append(f"manifest.sig: the signed files cannot be read from the zip ({exc})")
    return v


def _check(zf: zipfile.ZipFile, path, public_key, v: Verdict) -> None:
    _structure(zf, path, v)
    for name in SIGNED:  # read for the signature below, which an edit that leaves the output alone passes
        if name in zf.namelist():
            with zf.open(name) as fh:
                fh.read()
                if not zipshape.stream_complete(fh):
                    v.problems.append(f"{name}: its compressed data was edited (the deflate stream does not end "
                                      "where the entry does)")
    manifest = _signature(zf, public_key, v)
    if manifest is None:
        return
    _digests(zf, manifest, v)
    if manifest.get("format") == REVIEW_FORMAT:  # a submitted review (collector/review/signed.py)
        v.kind = "review"
        check_review(zf, manifest, v.problems)
        return
    points = manifest.get("points") or []
    if not points:
        v.problems.append("manifest.json: lists no points")
    for entry in points:
        _chain(zf, entry, v)
