"""``evidence verify`` does not accept forgeries (issue 18, item 5).

Without ``--public-key`` it trusted the key inside the bundle, so a bundle re-signed with any key exited 0
"OK: signature valid". A zip with two entries of one name passed (Python checks the last copy, ``unzip``
extracts the first), and leading junk and data-carrying directory entries passed silently.
"""

from __future__ import annotations

import base64
import json
import zipfile

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.cli import main
from collector.evidence.keys import public_b64, public_pem
from collector.evidence.verify import verify_bundle
from tests.helpers import POINT
from tests.test_evidence_bundle import build, key, seed  # noqa: F401 - key is a fixture

SHEET = f"points/{POINT}/sheet.pdf"


@pytest.fixture
def bundle(store, key, tmp_path):  # noqa: F811 - the fixture imported above
    seed(store, minutes=10)
    path, _ = build(store, key, tmp_path)
    pem = tmp_path / "collector.pem"
    pem.write_text(public_pem(key.public_key()))
    return path, pem


def verify_cli(capsys, path, *args) -> tuple[int, str]:
    code = main(["evidence", "verify", str(path), *args])
    return code, capsys.readouterr().out


def copy_zip(src, dst, extra=(), first=()) -> None:
    """``src``'s entries into ``dst``, with (name, bytes) entries written before them and after them."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for name, data in first:
            zout.writestr(name, data)
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
        for name, data in extra:
            zout.writestr(name, data)


def test_the_genuine_bundle_verifies_with_the_collectors_key(bundle, capsys):
    path, pem = bundle
    code, out = verify_cli(capsys, path, "--public-key", str(pem))
    assert code == 0 and "OK: signature valid" in out


def test_without_a_trusted_key_nothing_is_verified(bundle, tmp_path, capsys):
    path, _ = bundle
    code, out = verify_cli(capsys, path)
    assert code != 0 and "OK" not in out.split("NOT VERIFIED")[0]
    assert "NOT VERIFIED" in out and "--public-key" in out and "/api/v1/evidence/public-key" in out
    # The forgery: manifest re-signed by another key that the bundle now names. Consistent with itself.
    other = Ed25519PrivateKey.generate()
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read("manifest.json"))
    manifest["signing_key"] = {"algorithm": "Ed25519", "key_id": "forger", "public_key": public_b64(other.public_key())}
    data = json.dumps(manifest).encode()
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(forged, "w") as zout:
        for info in zin.infolist():
            body = {"manifest.json": data, "manifest.sig": base64.b64encode(other.sign(data))}.get(
                info.filename, zin.read(info.filename))
            zout.writestr(info.filename, body)
    assert not verify_bundle(forged).ok
    code, out = verify_cli(capsys, forged)
    assert code != 0 and "NOT VERIFIED" in out


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize("case", ["duplicate", "directory", "unlisted", "leading-junk", "trailing-junk"])
def test_the_zip_holds_nothing_but_the_listed_entries(bundle, tmp_path, capsys, case):
    path, pem = bundle
    bad = tmp_path / f"{case}.zip"
    if case == "duplicate":  # a forged first copy that unzip extracts; Python reads the genuine last one
        copy_zip(path, bad, first=[(SHEET, b"%PDF-1.4 forged")])
        expect = f"{SHEET}: 2 entries of this name"
    elif case == "directory":
        copy_zip(path, bad, extra=[("points/hidden/", b"data in a directory entry")])
        expect = "points/hidden/: a directory entry but not listed"
    elif case == "unlisted":
        copy_zip(path, bad, extra=[("run-me.exe", b"MZ")])
        expect = "run-me.exe: in the bundle but not listed"
    elif case == "leading-junk":
        bad.write_bytes(b"#!/bin/sh\necho forged\nexit 0\n" + path.read_bytes())
        expect = "bytes of unlisted data before the first entry"
    else:
        bad.write_bytes(path.read_bytes())
        with zipfile.ZipFile(bad, "a") as z:
            z.comment = b"hidden"
        expect = "comment"
    code, out = verify_cli(capsys, bad, "--public-key", str(pem))
    assert code == 1 and expect in out, out
