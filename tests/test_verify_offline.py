"""collector/evidence/verify.py on bundles made here, without a store: each problem the offline verifier must
find (its docstring and docs/en/operations.md "Evidence"), named by the file and line that broke.

The bundles are written with the exporter's own BundleWriter (streamed Zip64 entries, as real bundles are)
or with plain zipfile (no Zip64, as an older writer or another tool makes them). The hash chain's digests are
computed here from the chain's definition (collector/evidence/chain.py: sha256 of prev_digest, a newline and
the canonical body), key ids from theirs (16 hex digits of SHA-256 over the raw public key); the zip records
follow PKWARE's APPNOTE (4.3.14-4.3.16).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import struct
import zipfile

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.evidence import verify as verify_mod
from collector.evidence.bundle import BundleWriter
from collector.evidence.keys import public_b64, raw_public
from collector.evidence.verify import verify_bundle
from collector.review.check import FORMAT as REVIEW_FORMAT

CODE = "620102001001"
REPORTS = f"points/{CODE}/reports.jsonl"
GENESIS = "0" * 64
LINK = "prev_digest does not link to the previous report's digest"


def digest(prev: str, body: str) -> str:
    return hashlib.sha256((prev + "\n" + body).encode("utf-8")).hexdigest()


def chain_rows(n: int, tail: str = GENESIS) -> list[dict]:
    rows, prev = [], tail
    for i in range(1, n + 1):
        body = json.dumps({"n": i, "地点": "甲村"}, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        rows.append({"report_id": f"r{i}", "prev_digest": prev, "digest": digest(prev, body), "body": body})
        prev = rows[-1]["digest"]
    return rows


def kid(key) -> str:
    return hashlib.sha256(raw_public(key.public_key())).hexdigest()[:16]


@pytest.fixture
def key():
    return Ed25519PrivateKey.generate()


class Unseekable(io.RawIOBase):
    """A file that can only be appended to, as the HTTP response an export streams into: zipfile then
    writes every entry with a data descriptor after its data (flag 0x08)."""

    def __init__(self, fh):
        self.fh = fh

    def writable(self):
        return True

    def write(self, data):
        return self.fh.write(data)

    def seekable(self):
        return False

    def tell(self):
        raise OSError("not seekable")


def write(path, key, rows=None, *, lines=None, entry=None, manifest=None, files=(), name_key=True,
          streamed=False):
    """A bundle at ``path``: one point's reports (``rows``, or raw ``lines``), its chain as declared in the
    manifest (``entry`` overrides), other ``files``, signed by ``key``."""
    rows = chain_rows(3) if rows is None and lines is None else rows
    out = open(path, "wb") if streamed else None  # noqa: SIM115 - closed below, after finish
    bw = BundleWriter(Unseekable(out) if streamed else str(path))
    if lines is None:
        bw.add_jsonl(REPORTS, rows)
    else:
        bw.add(REPORTS, b"".join(lines))
    for name, data in files:
        bw.add(name, data)
    chain = {"reports": len(rows or []), "tail": rows[0]["prev_digest"] if rows else None,
             "head": rows[-1]["digest"] if rows else None, "break_count": 0}
    doc = {"format": "pointwatch-evidence/1", "points": [entry if entry is not None else {"code": CODE, "chain": chain}]}
    if name_key:
        doc["signing_key"] = {"algorithm": "Ed25519", "key_id": kid(key), "public_key": public_b64(key.public_key())}
    doc.update(manifest or {})
    bw.finish(doc, key)
    if out is not None:
        out.close()
    return path


def problems(path, key) -> list[str]:
    return verify_bundle(path, key.public_key()).problems


def rewrite(src, dst, replace=None, drop=(), add=(), key=None):
    """``src``'s entries into ``dst`` with plain zipfile (not streamed, no Zip64): some replaced or dropped,
    some added; ``key`` re-signs the manifest as it then is."""
    replace = dict(replace or {})
    with zipfile.ZipFile(src) as zin:
        entries = [(i.filename, replace.get(i.filename, zin.read(i.filename))) for i in zin.infolist()
                   if i.filename not in drop]
    entries += list(add)
    if key is not None:
        manifest = dict(entries)["manifest.json"]
        entries = [(n, base64.b64encode(key.sign(manifest)) + b"\n" if n == "manifest.sig" else d) for n, d in entries]
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for name, data in entries:
            info = zipfile.ZipInfo(name, (2024, 5, 1, 0, 0, 0))
            info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o600 << 16
            zout.writestr(info, data)
    return dst


# -- a good bundle ---------------------------------------------------------------------------------------------

def test_a_good_bundle_verifies_against_the_trusted_key_and_counts_what_it_checked(tmp_path, key):
    path = write(tmp_path / "b.zip", key, chain_rows(3), files=[("points/x.txt", b"x")])
    v = verify_bundle(path, key.public_key())
    assert (v.problems, v.notes, v.untrusted, v.trusted, v.ok) == ([], [], None, True, True)
    assert (v.reports, v.files, v.kind) == (3, 2, "evidence")


def test_a_bundle_without_zip64_or_streaming_verifies_too(tmp_path, key):
    src = write(tmp_path / "b.zip", key)
    v = verify_bundle(rewrite(src, tmp_path / "plain.zip"), key.public_key())
    assert (v.problems, v.ok, v.reports) == ([], True, 3)


def test_a_bundle_streamed_as_an_http_answer_as_the_exporter_makes_it_verifies(tmp_path, key):
    path = write(tmp_path / "s.zip", key, files=[("points/a.txt", b"a" * 3000)], streamed=True)
    with zipfile.ZipFile(path) as z:
        flags = {i.filename: i.flag_bits & 0x08 for i in z.infolist()}
        last = max(z.infolist(), key=lambda i: i.header_offset).filename
        start_dir = z.start_dir
    assert set(flags.values()) == {0x08}  # every entry streamed: sizes in a data descriptor after the data
    v = verify_bundle(path, key.public_key())
    assert (v.problems, v.ok, v.reports, v.files) == ([], True, 3, 2)
    raw = path.read_bytes()
    junk = tmp_path / "junk.zip"
    junk.write_bytes(raw[:start_dir] + b"TAIL" + raw[start_dir:])
    assert f"unlisted data after {last} (junk in the zip file)" in problems(junk, key)


def test_without_a_trusted_key_the_verdict_names_the_inside_key_and_is_never_ok(tmp_path, key):
    path = write(tmp_path / "b.zip", key)
    v = verify_bundle(path)
    assert v.problems == [] and not v.trusted and not v.ok
    assert v.untrusted.startswith("no trusted key: ") and f"(key id {kid(key)})" in v.untrusted
    assert "--public-key" in v.untrusted and "/api/v1/evidence/public-key" in v.untrusted
    unnamed = write(tmp_path / "unnamed.zip", key, name_key=False)
    v = verify_bundle(unnamed)
    assert v.problems == ["manifest.json: names no usable signing key, and no --public-key was given"]
    assert v.reports == 3 and v.untrusted is None  # the other checks still run, to say what else is wrong


# -- the signature -----------------------------------------------------------------------------------------------

def test_another_keys_signature_names_both_keys(tmp_path, key):
    other = Ed25519PrivateKey.generate()
    path = write(tmp_path / "b.zip", other)  # signed by and naming another key
    (problem,) = problems(path, key)
    assert problem == (f"manifest.sig: the signature does not verify over manifest.json with key {kid(key)} "
                       f"(manifest.json or manifest.sig was changed, or another key signed it; the bundle names "
                       f"key {kid(other)})")
    unnamed = write(tmp_path / "unnamed.zip", other, name_key=False)
    assert problems(unnamed, key) == [
        f"manifest.sig: the signature does not verify over manifest.json with key {kid(key)} "
        "(manifest.json or manifest.sig was changed, or another key signed it)"]


def test_a_signature_that_is_not_base64_does_not_verify(tmp_path, key):
    src = write(tmp_path / "b.zip", key)
    with zipfile.ZipFile(src) as z:
        genuine = z.read("manifest.sig").strip()
    for sig in (b"@@not base64@@", genuine[:10] + b"*" + genuine[10:]):  # a stray character in a good one too
        bad = rewrite(src, tmp_path / "bad.zip", replace={"manifest.sig": sig})
        (problem,) = problems(bad, key)
        assert problem.startswith(f"manifest.sig: the signature does not verify over manifest.json with key {kid(key)}")
    assert problems(rewrite(src, tmp_path / "good.zip", replace={"manifest.sig": genuine}), key) == []


@pytest.mark.parametrize("missing", ["manifest.json", "manifest.sig"])
def test_a_missing_signed_file_is_named_and_nothing_else_is_believed(tmp_path, key, missing):
    src = write(tmp_path / "b.zip", key)
    with zipfile.ZipFile(src) as z:
        listed = json.loads(z.read("manifest.json"))["files"]
    bad = rewrite(src, tmp_path / "bad.zip", drop=[missing])
    v = verify_bundle(bad, key.public_key())
    assert v.problems == [f"{missing}: missing from the bundle"] and v.reports == 0 and v.files == 0
    both = rewrite(src, tmp_path / "none.zip", drop=["manifest.json", "manifest.sig"])
    assert problems(both, key) == ["manifest.json: missing from the bundle", "manifest.sig: missing from the bundle"]
    assert sorted(listed) == [REPORTS]  # the reports file, listed in the manifest that is gone: not checked


@pytest.mark.parametrize("manifest,why", [(b"[1, 2]", "not an object"), (b"{not json", "Expecting"),
                                           (b"\xff\xfe", "codec")])
def test_a_manifest_that_is_not_a_json_object_is_named(tmp_path, key, manifest, why):
    src = write(tmp_path / "b.zip", key)
    bad = rewrite(src, tmp_path / "bad.zip", replace={"manifest.json": manifest}, key=key)
    v = verify_bundle(bad, key.public_key())
    assert v.problems[0].startswith("manifest.json: not valid JSON (") and why in v.problems[0]
    if why == "not an object":
        assert v.problems[0] == "manifest.json: not valid JSON (not an object)"
    assert v.problems[1:] == [] and v.reports == 0  # signed, but says nothing to check against


# -- the files and their digests -----------------------------------------------------------------------------

def test_each_file_is_held_to_its_listed_digest(tmp_path, key):
    src = write(tmp_path / "b.zip", key, files=[("points/a.txt", b"genuine")])
    with zipfile.ZipFile(src) as z:
        listed = json.loads(z.read("manifest.json"))["files"]["points/a.txt"]["sha256"]
    bad = rewrite(src, tmp_path / "bad.zip", replace={"points/a.txt": b"forged"})
    v = verify_bundle(bad, key.public_key())
    got = hashlib.sha256(b"forged").hexdigest()
    assert v.problems == [f"points/a.txt: SHA-256 {got[:16]}… differs from manifest.json ({listed[:16]}…): "
                          "the file was changed"]
    assert v.files == 2  # read and counted, though it differs


def test_unlisted_entries_and_listed_files_that_are_gone_are_named(tmp_path, key):
    src = write(tmp_path / "b.zip", key, files=[("points/0.txt", b"a")])  # listed before the reports file
    bad = rewrite(src, tmp_path / "bad.zip", drop=["points/0.txt"],
                  add=[("extra/", b""), ("run-me.exe", b"MZ")])
    v = verify_bundle(bad, key.public_key())
    assert v.problems == ["extra/: a directory entry but not listed in manifest.json",
                          "run-me.exe: in the bundle but not listed in manifest.json",
                          "points/0.txt: listed in manifest.json but missing from the bundle"]
    assert v.files == 1  # the files listed after it are still checked


def test_a_listing_without_a_digest_is_a_changed_file(tmp_path, key):
    src = write(tmp_path / "b.zip", key)
    with zipfile.ZipFile(src) as z:
        manifest = json.loads(z.read("manifest.json"))
    manifest["files"][REPORTS] = None
    bad = rewrite(src, tmp_path / "bad.zip", replace={"manifest.json": json.dumps(manifest).encode()}, key=key)
    (problem,) = problems(bad, key)
    assert problem.startswith(f"{REPORTS}: SHA-256 ") and problem.endswith("differs from manifest.json (None…): "
                                                                            "the file was changed")


def stored_with_a_flipped_byte(src, dst, name):
    """``src`` rewritten uncompressed (one flipped byte is one changed byte of the file) with a byte of
    ``name``'s data flipped: it fails its CRC-32 when read."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for i in zin.infolist():
            zout.writestr(i, zin.read(i.filename), compress_type=zipfile.ZIP_STORED)
    raw = bytearray(dst.read_bytes())
    with zipfile.ZipFile(dst) as z:
        info = z.getinfo(name)
    raw[info.header_offset + 30 + len(info.filename) + len(info.extra) + 5] ^= 0x01
    dst.write_bytes(bytes(raw))
    return dst


def not_about_headers(v) -> list[str]:
    """The problems but the header ones a stored (not deflated) entry earns: no bundle writer stores."""
    return [p for p in v.problems if "zip header edited (flags or compression method we never write" not in p]


def test_a_member_whose_bytes_fail_their_crc_cannot_be_read(tmp_path, key):
    src = write(tmp_path / "b.zip", key, files=[("points/0.txt", b"a" * 5000)])  # listed before the reports
    v = verify_bundle(stored_with_a_flipped_byte(src, tmp_path / "stored.zip", "points/0.txt"), key.public_key())
    assert not_about_headers(v) == ["points/0.txt: cannot be read from the zip (Bad CRC-32 for file "
                                    "'points/0.txt')"]
    assert v.files == 1 and v.reports == 3  # the reports file after it, read and counted; the broken one not


def test_a_reports_file_that_cannot_be_read_is_named_twice(tmp_path, key):
    src = write(tmp_path / "b.zip", key)
    v = verify_bundle(stored_with_a_flipped_byte(src, tmp_path / "stored.zip", REPORTS), key.public_key())
    unreadable = f"{REPORTS}: cannot be read from the zip (Bad CRC-32 for file '{REPORTS}')"
    assert not_about_headers(v) == [unreadable, unreadable]  # as a listed file, and as the point's chain
    assert v.files == 0 and v.reports == 0


def test_reports_are_counted_over_every_point(tmp_path, key):
    other = "620102001002"
    rows, more = chain_rows(3), chain_rows(2, tail="e" * 64)
    bw = BundleWriter(str(tmp_path / "two.zip"))
    bw.add_jsonl(REPORTS, rows)
    bw.add_jsonl(f"points/{other}/reports.jsonl", more)
    points = [{"code": code, "chain": {"reports": len(r), "tail": r[0]["prev_digest"], "head": r[-1]["digest"]}}
              for code, r in ((CODE, rows), (other, more))]
    bw.finish({"points": points, "signing_key": {"algorithm": "Ed25519", "key_id": kid(key),
                                                 "public_key": public_b64(key.public_key())}}, key)
    v = verify_bundle(tmp_path / "two.zip", key.public_key())
    assert (v.problems, v.reports, v.files, v.ok) == ([], 5, 2, True)


# -- the hash chain ------------------------------------------------------------------------------------------------

def test_a_missing_reports_file_is_named(tmp_path, key):
    path = write(tmp_path / "b.zip", key, entry={"code": "620102009999", "chain": {}})
    v = verify_bundle(path, key.public_key())
    assert v.problems == ["points/620102009999/reports.jsonl: missing from the bundle"] and v.reports == 0


def test_a_line_that_is_not_a_report_is_named_by_its_number(tmp_path, key):
    rows = chain_rows(2)
    lines = [(json.dumps(rows[0]) + "\n").encode(), b'{"report_id": "r2", "prev_digest": "x"}\n',
             b"not json\n", b"[1]\n", (json.dumps(rows[1]) + "\n").encode()]
    path = write(tmp_path / "b.zip", key, lines=lines, entry={"code": CODE, "chain": {
        "reports": 2, "tail": GENESIS, "head": rows[1]["digest"]}})
    v = verify_bundle(path, key.public_key())
    assert v.problems == [f"{REPORTS} line 2: not a report line (KeyError: 'digest')",
                          f"{REPORTS} line 3: not a report line (JSONDecodeError: Expecting value: line 1 column 1 "
                          "(char 0))",
                          f"{REPORTS} line 4: not a report line (AttributeError: 'list' object has no attribute 'get')"]
    assert v.reports == 2


def test_each_chain_break_is_named_with_its_line_and_report(tmp_path, key):
    rows = chain_rows(4)
    del rows[1]  # report r2 removed: r3 no longer links
    rows[2] = {**rows[2], "body": rows[2]["body"].replace("甲村", "乙村")}  # r4 edited after it was stored
    chain = {"reports": 3, "tail": GENESIS, "head": rows[-1]["digest"]}
    v = verify_bundle(write(tmp_path / "b.zip", key, rows, entry={"code": CODE, "chain": chain}), key.public_key())
    assert [p.split(": hash chain broken: ")[0] for p in v.problems] == [f"{REPORTS} line 2 (report r3)",
                                                                         f"{REPORTS} line 3 (report r4)"]
    assert v.problems[0].endswith(f": hash chain broken: {LINK} (a report was removed, inserted or reordered)")
    assert v.problems[1].endswith(": hash chain broken: digest does not match the report body (the report was "
                                  "changed after it was stored)")
    assert v.reports == 3


def test_beyond_a_hundred_breaks_the_rest_are_counted(tmp_path, key):
    rows = [{"report_id": f"r{i}", "prev_digest": f"{i:064x}", "digest": "0" * 64, "body": "{}"} for i in range(102)]
    chain = {"reports": 102, "tail": rows[0]["prev_digest"], "head": "0" * 64}
    v = verify_bundle(write(tmp_path / "b.zip", key, rows, entry={"code": CODE, "chain": chain}), key.public_key())
    named = [p for p in v.problems if "hash chain broken" in p]
    assert len(named) == 100  # chain.py MAX_BREAKS
    # 102 edited bodies and 101 broken links: 203 breaks, 100 of them named
    assert v.problems[-1] == f"{REPORTS}: 103 more hash-chain breaks"


def test_the_chain_must_be_the_one_the_manifest_declares(tmp_path, key):
    rows = chain_rows(3)
    declared = {"reports": 4, "tail": "f" * 64, "head": None}
    v = verify_bundle(write(tmp_path / "b.zip", key, rows, entry={"code": CODE, "chain": declared}), key.public_key())
    assert v.problems == [f"{REPORTS}: chain reports is 3 but manifest.json says 4",
                          f"{REPORTS}: chain tail is '{GENESIS}' but manifest.json says '{'f' * 64}'",
                          f"{REPORTS}: chain head is '{rows[-1]['digest']}' but manifest.json says None"]


def test_breaks_the_exporter_found_are_noted_not_refused(tmp_path, key):
    rows = chain_rows(2)
    chain = {"reports": 2, "tail": GENESIS, "head": rows[-1]["digest"], "break_count": 3}
    v = verify_bundle(write(tmp_path / "b.zip", key, rows, entry={"code": CODE, "chain": chain}), key.public_key())
    assert v.problems == [] and v.ok
    assert v.notes == [f"point {CODE}: the exporter found 3 hash-chain break(s) in the stored history and recorded "
                       "them in manifest.json and the sheet"]


def test_a_bundle_listing_no_points_is_refused(tmp_path, key):
    path = write(tmp_path / "b.zip", key, manifest={"points": []})
    v = verify_bundle(path, key.public_key())
    assert v.problems == ["manifest.json: lists no points"] and not v.ok and v.files == 1


def test_a_review_bundle_is_checked_as_a_review(tmp_path, key):
    path = write(tmp_path / "b.zip", key, manifest={"format": REVIEW_FORMAT, "points": []})
    v = verify_bundle(path, key.public_key())
    assert v.kind == "review" and "review.json: missing from the bundle" in v.problems
    assert "manifest.json: lists no points" not in v.problems and v.reports == 0


# -- the zip itself ----------------------------------------------------------------------------------------------

def test_a_file_that_is_not_a_zip_is_named(tmp_path, key):
    path = tmp_path / "not.zip"
    path.write_bytes(b"PK but not a zip")
    v = verify_bundle(path, key.public_key())
    assert len(v.problems) == 1 and v.problems[0].startswith(f"{path}: not a readable zip file (")
    assert not v.ok


def test_bytes_after_the_last_entry_are_named(tmp_path, key):
    src = write(tmp_path / "b.zip", key)
    raw = src.read_bytes()
    with zipfile.ZipFile(src) as z:
        last = max(z.infolist(), key=lambda i: i.header_offset).filename
        start_dir = z.start_dir
    trailing = tmp_path / "trailing.zip"
    trailing.write_bytes(raw[:start_dir] + b"TAIL" + raw[start_dir:])  # zipfile still reads it (concat 4)
    v = verify_bundle(trailing, key.public_key())
    assert f"unlisted data after {last} (junk in the zip file)" in v.problems and not v.ok


def test_bytes_between_entries_are_named_with_the_entry_they_precede(tmp_path, key):
    src = write(tmp_path / "b.zip", key)
    with zipfile.ZipFile(src) as zin:
        entries = [(i.filename, zin.read(i.filename)) for i in sorted(zin.infolist(), key=lambda i: i.header_offset)]
    bad = tmp_path / "between.zip"
    with open(bad, "wb") as out, zipfile.ZipFile(Unseekable(out), "w", zipfile.ZIP_DEFLATED) as zout:
        for n, (name, data) in enumerate(entries):
            if n == 2:
                zout.fp.write(b"JUNK!")  # between two entries; the central directory counts them in
            info = zipfile.ZipInfo(name, (2024, 5, 1, 0, 0, 0))
            info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o600 << 16
            zout.writestr(info, data)
    assert problems(bad, key) == [f"5 bytes of unlisted data before {entries[2][0]} (junk in the zip file)"]


def test_signed_files_that_cannot_be_read_are_named(tmp_path, key):
    src = write(tmp_path / "b.zip", key)
    stored = tmp_path / "stored.zip"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(stored, "w") as zout:
        for i in zin.infolist():
            zout.writestr(i, zin.read(i.filename), compress_type=zipfile.ZIP_STORED)
    raw = bytearray(stored.read_bytes())
    with zipfile.ZipFile(stored) as z:
        info = z.getinfo("manifest.json")
    raw[info.header_offset + 30 + len(info.filename) + len(info.extra) + 5] ^= 0x01  # fails its CRC
    stored.write_bytes(bytes(raw))
    v = verify_bundle(stored, key.public_key())
    # (stored entries are no bundle writer's either: each header is named for that too)
    assert [p for p in v.problems if "zip header edited (flags or compression method we never write" not in p] == [
        "manifest.sig: the signed files cannot be read from the zip (Bad CRC-32 for file 'manifest.json')"]
    assert not v.ok


def test_leading_junk_and_a_comment_are_named(tmp_path, key):
    src = write(tmp_path / "b.zip", key)
    lead = tmp_path / "lead.zip"
    lead.write_bytes(b"#!/bin/sh\n" + src.read_bytes())
    assert problems(lead, key) == ["10 bytes of unlisted data before the first entry (junk in the zip file)"]
    commented = tmp_path / "comment.zip"
    commented.write_bytes(src.read_bytes())
    with zipfile.ZipFile(commented, "a") as z:
        z.comment = b"hidden"
    assert "the zip carries a comment of 6 bytes (we write none)" in problems(commented, key)


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_two_entries_of_one_name_are_named(tmp_path, key):
    src = write(tmp_path / "b.zip", key, files=[("points/a.txt", b"a")])
    bad = rewrite(src, tmp_path / "dup.zip", add=[("points/a.txt", b"a")])
    assert "points/a.txt: 2 entries of this name in the zip (tools disagree on which one counts)" in problems(bad, key)


def test_the_central_directory_is_found_through_a_zip64_end_record():
    # APPNOTE 4.3.14: the Zip64 end of central directory record holds the directory's offset at byte 48;
    # 4.3.16: the end record's offset field (byte 16) is 0xFFFFFFFF when the Zip64 record holds it.
    zip64_end = b"PK\x06\x06" + struct.pack("<QHHIIQQQQ", 44, 45, 45, 0, 0, 1, 1, 80, 0x1_2345_6789)
    locator = b"PK\x06\x07" + struct.pack("<IQI", 0, 1000, 1)
    end = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 1, 1, 80, 0xFFFFFFFF, 0)
    assert verify_mod._central_dir_offset(b"x" * 1000 + zip64_end + locator + end) == 0x1_2345_6789
    assert verify_mod._central_dir_offset(zip64_end + locator + end) == 0x1_2345_6789  # the record at byte 0
    assert verify_mod._central_dir_offset(b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 1, 1, 80, 1234, 0)) == 1234
    assert verify_mod._central_dir_offset(b"junk" + end) == 0xFFFFFFFF  # no Zip64 record: the field as it is
    assert verify_mod._central_dir_offset(b"no end record at all") == 0


def test_extra_field_ids_are_read_record_by_record():
    # APPNOTE 4.5.1: header id and data size (2 bytes each, little-endian), then the data
    extra = struct.pack("<HH", 0x0001, 16) + bytes(16) + struct.pack("<HH", 0x5455, 5) + bytes(5)
    assert list(verify_mod._extra_ids(extra)) == [0x0001, 0x5455]
    assert list(verify_mod._extra_ids(extra + b"\x01\x00\x00")) == [0x0001, 0x5455]  # a cut record: not read
    assert list(verify_mod._extra_ids(struct.pack("<HH", 0x0001, 0))) == [0x0001]
    assert list(verify_mod._extra_ids(b"")) == []
    big = struct.pack("<HH", 0x9901, 0x8000) + bytes(0x8000) + struct.pack("<HH", 0x0001, 0)  # sizes are unsigned
    assert list(verify_mod._extra_ids(big)) == [0x9901, 0x0001]
