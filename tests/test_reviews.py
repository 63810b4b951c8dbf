"""Reviews (issue 22): a reviewer scores a point's manual items, submits, and the signed bundle verifies offline.

On both stores (the ``store`` fixture), through the real app (TestClient) with real tokens, the real signing
key and the offline verifier; every refusal names what was wrong.
"""

from __future__ import annotations

import io
import json
import zipfile
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from collector.accounts import users
from collector.app import create_app
from collector.cli import main
from collector.evidence.keys import load_or_create, public_pem
from collector.evidence.verify import verify_bundle
from collector.settings import Settings
from collector.store import audit, points
from tests.helpers import ingest, make_report

COUNTY = "甘肃省/兰州市/城关区"
REGION = COUNTY + "/某镇/某村"
POINT, POINT2 = "620102001001", "620102001002"
START = datetime(2026, 1, 1, 0, 0, tzinfo=timezone.utc)
FROM, TO = "2026-01-01", "2026-01-01"  # one Beijing day, as the evidence API takes it
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture
def world(store, tmp_path):
    for code in (POINT, POINT2):
        points.upsert_point(store, code, f"某村医保服务点{code[-1]}", REGION, profile="lanzhou-basic-2023",
                            created_at=START - timedelta(days=1))
    statuses = {"net.core.tcp": "ok", "net.core.icmp": "ok", "isolation.internet": "ok"}
    ingest(store, [make_report(POINT, seq=i + 1, statuses=statuses, collected_at=START + timedelta(minutes=i))
                   for i in range(5)], received_at=START + timedelta(minutes=5))
    tokens = {
        "rev-a": users.create_token(store, "reviewer", COUNTY, person="评审甲"),
        "rev-b": users.create_token(store, "reviewer", COUNTY, person="评审乙"),
        "admin": users.create_token(store, "admin", COUNTY, person="管理丙"),
        "viewer": users.create_token(store, "viewer", COUNTY, person="查看丁"),
        "outsider": users.create_token(store, "reviewer", "甘肃省/兰州市/七里河区", person="评审戊"),
    }
    data = tmp_path / "data"
    client = TestClient(create_app(Settings(data_dir=data), store=store))
    return client, {k: {"Authorization": f"Bearer {v}"} for k, v in tokens.items()}, load_or_create(data)


def opened(client, who, code=POINT, **extra):
    r = client.post("/api/v1/reviews", json={"point": code, "from": FROM, "to": TO, **extra}, headers=who)
    assert r.status_code in (200, 201), r.text
    return r.json()["id"]


def score_all(client, who, rid, half=False) -> float:
    """Give every applicable manual item a score (full marks, or half of them): returns the manual sum."""
    review = client.get(f"/api/v1/reviews/{rid}", headers=who).json()
    total = 0.0
    for it in review["items"]:
        if it["mode"] == "auto" or it["monitor_state"] == "not_applicable":
            continue
        score = it["points"] / 2 if half and it["points"] % 1 == 0 and it["points"] % 2 == 0 else it["points"]
        r = client.put(f"/api/v1/reviews/{rid}/items/{it['id']}", json={"score": score, "note": "现场查看"},
                       headers=who)
        assert r.status_code == 200, r.text
        total += score
    return total


def test_a_review_is_scored_submitted_signed_and_verified_offline(world, tmp_path):
    client, who, key = world
    rid = opened(client, who["rev-a"])
    draft = client.get(f"/api/v1/reviews/{rid}", headers=who["rev-a"]).json()
    assert draft["state"] == "draft" and draft["reviewer"]["person"] == "评审甲"
    assert draft["chain"]["reports"] == 5 and draft["chain"]["intact"]
    assert draft["automatic"] == draft["automatic_monitor"] and len(draft["missing"]) == 42
    # resuming: the same reviewer opening the same point and period gets the draft back
    again = client.post("/api/v1/reviews", json={"point": POINT, "from": FROM, "to": TO}, headers=who["rev-a"])
    assert again.status_code == 200 and again.json()["id"] == rid
    manual = score_all(client, who["rev-a"], rid, half=True)
    auto_item = next(i for i in draft["items"] if i["mode"] == "auto" and i["monitor_state"] == "not_met")
    r = client.put(f"/api/v1/reviews/{rid}/items/{auto_item['id']}", headers=who["rev-a"],
                   json={"score": auto_item["points"], "reason": "现场核实：设备在用，监测未接入", "note": "见照片"})
    assert r.status_code == 200, r.text
    r = client.post(f"/api/v1/reviews/{rid}/attachments?item={auto_item['id']}&name=现场.png", content=PNG,
                    headers=who["rev-a"])
    assert r.status_code == 201 and r.json()["media_type"] == "image/png", r.text
    r = client.post(f"/api/v1/reviews/{rid}/attachments?name=台账.pdf", content=PDF, headers=who["rev-a"])
    assert r.status_code == 201 and r.json()["media_type"] == "application/pdf"
    r = client.post(f"/api/v1/reviews/{rid}/submit", headers=who["rev-a"])
    assert r.status_code == 200, r.text
    done = client.get(f"/api/v1/reviews/{rid}", headers=who["admin"]).json()  # admins see reviews
    assert done["state"] == "submitted" and done["current"] and not done["vetoed"]
    assert done["manual"] == manual
    assert done["automatic"] == draft["automatic_monitor"] + auto_item["points"]
    assert done["total"] == done["automatic"] + done["manual"]
    assert done["overridden"] == [auto_item["id"]]
    line = next(i for i in done["items"] if i["id"] == auto_item["id"])
    assert line["monitor_state"] == "not_met" and line["monitor_earned"] == 0 and line["counted"] == auto_item["points"]

    data = client.get(f"/api/v1/reviews/{rid}/bundle.zip", headers=who["rev-a"])
    assert data.status_code == 200
    path = tmp_path / "review.zip"
    path.write_bytes(data.content)
    v = verify_bundle(path, key.public_key())
    assert v.ok and v.kind == "review", v.problems
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        doc = json.loads(zf.read("review.json"))
        names = zf.namelist()
        assert zf.read(f"attachments/{doc['attachments'][0]['sha256']}.png") == PNG
    assert manifest["format"] == "pointwatch-review/1" and manifest["review"]["total"] == done["total"]
    assert manifest["reviewer"]["person"] == "评审甲" and manifest["reviewer"]["role"] == "reviewer"
    assert doc["automatic_part"]["chain"]["head"] == draft["chain"]["head"]
    # the final sheet is the bundle's own, and says automatic + manual = total
    sheet = client.get(f"/api/v1/reviews/{rid}/sheet.xlsx", headers=who["admin"])
    with zipfile.ZipFile(path) as zf:
        assert sheet.content == zf.read("sheet.xlsx")
    from openpyxl import load_workbook

    ws = load_workbook(io.BytesIO(sheet.content)).active
    cells = [c for row in ws.iter_rows(values_only=True) for c in row if c is not None]
    assert f"总分 {done['total']:g} 分" in " ".join(str(c) for c in cells) and "是" in cells  # the override flagged
    key_file = tmp_path / "collector.pem"
    key_file.write_text(public_pem(key.public_key()))
    assert main(["evidence", "verify", str(path), "--public-key", str(key_file)]) == 0

    # any edited byte: each member changed, and bytes of the zip itself
    for name in names:
        bad = tmp_path / "bad.zip"
        with zipfile.ZipFile(path) as zin, zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED) as zout:
            for info in zin.infolist():
                body = zin.read(info.filename)
                if info.filename == name:
                    body = body[: len(body) // 2] + bytes([body[len(body) // 2] ^ 1]) + body[len(body) // 2 + 1:]
                zout.writestr(info.filename, body)
        problems = verify_bundle(bad, key.public_key()).problems
        expected = "manifest.sig" if name in ("manifest.json", "manifest.sig") else name
        assert any(p.startswith(expected) for p in problems), (name, problems)
    raw = path.read_bytes()
    # every byte of the zip's bookkeeping (local headers, the central directory, the end record), and a
    # sample of the compressed data between
    with zipfile.ZipFile(path) as zf:
        headers = [range(i.header_offset, i.header_offset + 30 + len(i.filename) + 20) for i in zf.infolist()]
        headers.append(range(zf.start_dir, len(raw)))
    positions = sorted({p for r in headers for p in r if p < len(raw)} | set(range(0, len(raw), len(raw) // 40)))
    bad = tmp_path / "raw.zip"
    for at in positions:
        bad.write_bytes(raw[:at] + bytes([raw[at] ^ 1]) + raw[at + 1:])
        assert not verify_bundle(bad, key.public_key()).ok, at
    assert main(["evidence", "verify", str(bad), "--public-key", str(key_file)]) == 1

    # submitted is immutable
    r = client.put(f"/api/v1/reviews/{rid}/items/{auto_item['id']}", json={"score": 0, "reason": "x"},
                   headers=who["rev-a"])
    assert r.status_code == 409 and "correction" in r.json()["detail"]
    assert client.post(f"/api/v1/reviews/{rid}/attachments", content=PNG, headers=who["rev-a"]).status_code == 409
    assert client.post(f"/api/v1/reviews/{rid}/submit", headers=who["rev-a"]).status_code == 409


def test_bad_entries_are_refused_naming_what_was_wrong(world):
    client, who, _ = world
    rid = opened(client, who["rev-a"])
    items = client.get(f"/api/v1/reviews/{rid}", headers=who["rev-a"]).json()["items"]
    manual = next(i for i in items if i["mode"] == "manual" and i["points"] == 2.5)
    auto = next(i for i in items if i["mode"] == "auto")
    plain = next(i for i in items if i["mode"] == "manual" and not i["veto_item"] and i["points"] > 0)

    def put(item, body, who_=who["rev-a"]):
        return client.put(f"/api/v1/reviews/{rid}/items/{item}", json=body, headers=who_)

    assert put(manual["id"], {"score": 2.5}).status_code == 200  # halves where the table uses them
    r = put(manual["id"], {"score": 3})
    assert r.status_code == 422 and "outside 0..2.5" in r.json()["detail"]
    r = put(manual["id"], {"score": 1.3})
    assert r.status_code == 422 and "steps of 0.5" in r.json()["detail"]
    r = put("no.such.item", {"score": 1})
    assert r.status_code == 404 and "no.such.item" in r.json()["detail"]
    r = put(auto["id"], {"score": 0})
    assert r.status_code == 422 and "reason" in r.json()["detail"]
    r = put(plain["id"], {"score": 0, "veto": True})
    assert r.status_code == 422 and "一票否决" in r.json()["detail"]
    assert put(manual["id"], {"score": 1, "extra": 1}).status_code == 422
    # only the reviewer who opened it writes it; admins never do; viewers see nothing
    assert put(manual["id"], {"score": 1}, who["rev-b"]).status_code == 403
    assert put(manual["id"], {"score": 1}, who["admin"]).status_code == 403
    assert client.get(f"/api/v1/reviews/{rid}", headers=who["viewer"]).status_code == 403
    assert client.get(f"/api/v1/reviews/{rid}", headers=who["outsider"]).status_code == 404
    assert client.post("/api/v1/reviews", json={"point": POINT, "from": FROM, "to": TO},
                       headers=who["outsider"]).status_code == 404
    r = client.post("/api/v1/reviews", json={"point": POINT, "from": "2026-02-01", "to": "2026-01-01"},
                    headers=who["rev-a"])
    assert r.status_code == 422 and "--to" in r.json()["detail"]
    # attachments: judged by their bytes, size-limited
    r = client.post(f"/api/v1/reviews/{rid}/attachments?name=photo.jpg", content=b"MZ\x90\x00" + b"\x00" * 100,
                    headers={**who["rev-a"], "Content-Type": "image/jpeg"})
    assert r.status_code == 415 and "by its content" in r.json()["detail"]
    r = client.post(f"/api/v1/reviews/{rid}/attachments?name=big.jpg", content=b"\xff\xd8\xff" + b"\x00" * (9 << 20),
                    headers=who["rev-a"])
    assert r.status_code == 413
    r = client.post(f"/api/v1/reviews/{rid}/attachments?item=nope", content=PNG, headers=who["rev-a"])
    assert r.status_code == 404
    # submitting with items left names them; nothing entered so far is lost
    r = client.post(f"/api/v1/reviews/{rid}/submit", headers=who["rev-a"])
    assert r.status_code == 422 and "not scored yet" in r.json()["detail"] and plain["id"] in r.json()["detail"]
    kept = client.get(f"/api/v1/reviews/{rid}", headers=who["rev-a"]).json()
    assert next(i for i in kept["items"] if i["id"] == manual["id"])["score"] == 2.5
    # clearing an entry
    assert put(manual["id"], {"score": None}).json()["saved"] is False
    # a draft's sheet can be read (marked 草稿); it has no signed bundle yet, and admins never get one
    sheet = client.get(f"/api/v1/reviews/{rid}/sheet.pdf", headers=who["admin"])
    assert sheet.status_code == 200 and sheet.content.startswith(b"%PDF")
    assert client.get(f"/api/v1/reviews/{rid}/bundle.zip", headers=who["rev-a"]).status_code == 409
    assert client.get(f"/api/v1/reviews/{rid}/bundle.zip", headers=who["admin"]).status_code == 403


def test_a_correction_keeps_both_the_newer_is_current_and_the_audit_names_both(world, store, tmp_path):
    client, who, key = world
    first = opened(client, who["rev-a"])
    score_all(client, who["rev-a"], first)
    assert client.post(f"/api/v1/reviews/{first}/submit", headers=who["rev-a"]).status_code == 200
    r = client.post("/api/v1/reviews", json={"point": POINT, "from": FROM, "to": TO, "replaces": 999},
                    headers=who["rev-b"])
    assert r.status_code == 409 and f"review {first} is" in r.json()["detail"]
    second = opened(client, who["rev-b"])
    assert second != first
    score_all(client, who["rev-b"], second, half=True)
    assert client.post(f"/api/v1/reviews/{second}/submit", headers=who["rev-b"]).status_code == 200
    old = client.get(f"/api/v1/reviews/{first}", headers=who["rev-a"]).json()
    new = client.get(f"/api/v1/reviews/{second}", headers=who["rev-a"]).json()
    assert old["state"] == new["state"] == "submitted"
    assert not old["current"] and old["replaced_by"] == [second]
    assert new["current"] and new["replaces"] == first and new["total"] < old["total"]
    listed = client.get(f"/api/v1/reviews?point={POINT}&from={FROM}&to={TO}", headers=who["admin"]).json()
    assert [x["id"] for x in listed["reviews"]] == [second, first]
    subs = audit.audit_entries(store, action="review.submit")
    actors = {e["actor"] for e in subs}
    assert len(subs) == 2 and len(actors) == 2
    newest = subs[0]
    assert newest["details"]["replaces"] == first and newest["details"]["replaces_reviewer"] in actors
    assert newest["actor"] != newest["details"]["replaces_reviewer"]
    assert audit.verify_audit(store).ok
    # the correction's bundle names the review it corrects
    path = tmp_path / "second.zip"
    path.write_bytes(client.get(f"/api/v1/reviews/{second}/bundle.zip", headers=who["rev-b"]).content)
    assert verify_bundle(path, key.public_key()).ok
    with zipfile.ZipFile(path) as zf:
        assert json.loads(zf.read("manifest.json"))["review"]["replaces"]["id"] == first


def test_a_veto_makes_the_total_zero_and_the_summary_ranks_the_round(world, tmp_path):
    client, who, key = world
    rid = opened(client, who["rev-a"])
    score_all(client, who["rev-a"], rid)
    veto = next(i for i in client.get(f"/api/v1/reviews/{rid}", headers=who["rev-a"]).json()["items"]
                if i["veto_item"])
    assert client.put(f"/api/v1/reviews/{rid}/items/{veto['id']}", json={"score": 0, "veto": True, "note": "账目不符"},
                      headers=who["rev-a"]).status_code == 200
    client.post(f"/api/v1/reviews/{rid}/submit", headers=who["rev-a"])
    done = client.get(f"/api/v1/reviews/{rid}", headers=who["rev-a"]).json()
    assert done["vetoed"] and done["total"] == 0 and done["manual"] > 0
    path = tmp_path / "veto.zip"
    path.write_bytes(client.get(f"/api/v1/reviews/{rid}/bundle.zip", headers=who["rev-a"]).content)
    assert verify_bundle(path, key.public_key()).ok

    other = opened(client, who["rev-b"], code=POINT2)
    score_all(client, who["rev-b"], other, half=True)
    client.post(f"/api/v1/reviews/{other}/submit", headers=who["rev-b"])
    s = client.get(f"/api/v1/reviews/summary?region={COUNTY}&from={FROM}&to={TO}", headers=who["admin"]).json()
    assert s["points"] == 2 and s["reviewed"] == 2 and s["not_reviewed"] == []
    assert [r["code"] for r in s["ranking"]] == [POINT2, POINT] and s["ranking"][1]["vetoed"]
    assert s["items_lost"][0]["points_losing"] >= 1
    s2 = client.get(f"/api/v1/reviews/summary?region={COUNTY}&from=2026-02-01&to=2026-02-28",
                    headers=who["rev-a"]).json()
    assert s2["reviewed"] == 0 and {p["code"] for p in s2["not_reviewed"]} == {POINT, POINT2}
    x = client.get(f"/api/v1/reviews/summary.xlsx?region={COUNTY}&from={FROM}&to={TO}", headers=who["admin"])
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(x.content))
    assert wb.sheetnames == ["排名", "失分项", "未评审"]
    assert [row[1] for row in wb["排名"].iter_rows(min_row=3, values_only=True)] == [POINT2, POINT]


def test_two_drafts_of_one_period_the_later_submission_corrects_the_earlier(world):
    client, who, _ = world
    a, b = opened(client, who["rev-a"]), opened(client, who["rev-b"])  # neither saw the other's
    assert a != b
    for rid, w in ((a, who["rev-a"]), (b, who["rev-b"])):
        score_all(client, w, rid)
    assert client.post(f"/api/v1/reviews/{a}/submit", headers=who["rev-a"]).status_code == 200
    assert client.post(f"/api/v1/reviews/{b}/submit", headers=who["rev-b"]).status_code == 200
    later = client.get(f"/api/v1/reviews/{b}", headers=who["admin"]).json()
    assert later["replaces"] == a and later["current"]
    assert client.get(f"/api/v1/reviews/{a}", headers=who["admin"]).json()["replaced_by"] == [b]


def test_attachments_are_judged_by_their_bytes():
    from collector.review.files import AttachmentError, accept, sniff

    assert sniff(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert sniff(PNG) == "image/png" and sniff(PDF) == "application/pdf"
    assert sniff(b"\x00\x00\x00\x18ftypheic\x00\x00") == "image/heic"
    assert sniff(b"RIFF\x10\x00\x00\x00WEBPVP8 ") == "image/webp"
    for hostile in (b"<svg onload=alert(1)>", b"<html><script>", b"MZ\x90\x00", b"PK\x03\x04zip", b"#!/bin/sh"):
        assert sniff(hostile) is None
        with pytest.raises(AttachmentError):
            accept(hostile)
