"""Evidence bundles: export, offline verification, and every kind of tampering named by what broke."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from agent.wire import Fingerprint
from collector.evidence.bundle import export
from collector.evidence.keys import key_id, load_or_create, public_pem
from collector.evidence.period import parse_period
from collector.evidence.verify import verify_bundle
from collector.scoring.profiles import level_of
from collector.store import enrolment, points
from tests.conftest import require, require_tool
from tests.helpers import POINT, REGION, ingest, make_report

START = datetime(2026, 1, 1, 0, 0, tzinfo=timezone.utc)  # 08:00 Beijing time
FROM, TO = "2026-01-01T08:00:00+08:00", "2026-01-01T10:00:00+08:00"
FP = Fingerprint("m-1", "SN1", ["00:11:22:33:44:55"])
STATUSES = {"net.core.tcp": "ok", "net.core.icmp": "ok", "isolation.internet": "ok", "isolation.interfaces": "ok",
            "identity.fingerprint": "ok", "usage.processes": "ok", "usage.removable_media": "ok",
            "device.printer": "ok", "device.kiosk": "ok"}


def seed(store, minutes: int = 120, code: str = POINT, region: str = REGION) -> None:
    """One enrolled point with a report a minute; the printer fails for ten minutes, a USB stick once."""
    points.upsert_point(store, code, "某村医保服务点", region, profile="lanzhou-basic-2023", created_at=START)
    enrolment.enroll(store, enrolment.create_enroll_code(store, code), code, "cun-pc", {"machine_id": "m-1", "serial": "SN1",
                                                                 "macs": ["00:11:22:33:44:55"]})
    for i in range(minutes):
        at = START + timedelta(minutes=i)
        st = dict(STATUSES)
        if 30 <= i < 40:
            st["device.printer"] = "fail"
        if i == 50:
            st["usage.removable_media"] = "fail"
        ingest(store, [make_report(code, seq=i + 1, statuses=st, collected_at=at, fingerprint=FP)],
                             received_at=at + timedelta(seconds=2))
    # What the alert engine records for that printer outage, and the silence the county set meanwhile.
    from collector.store.models import Alert, Silence

    with store.session() as s:
        s.add(Alert(fingerprint="f" * 64, rule="device_missing", point_code=code, region_path=region,
                    check="device.printer", target="打印机", severity="warning", state="resolved",
                    summary="必备设备缺失或故障：打印机", value=0, pending_since=START + timedelta(minutes=30),
                    fired_at=START + timedelta(minutes=32), resolved_at=START + timedelta(minutes=40),
                    updated_at=START + timedelta(minutes=40)))
        s.add(Silence(region_path=region, point_code=code, rule="printer_supply_low", reason="更换硒鼓",
                      created_by="admin", created_at=START, starts_at=START, ends_at=START + timedelta(hours=1)))


@pytest.fixture
def key(tmp_path):
    return load_or_create(tmp_path / "keydir")


def build(store, key, tmp_path, name="bundle.zip", **kw) -> tuple:
    path = tmp_path / name
    with open(path, "wb") as fh:
        manifest = export(store, key, fh, parse_period(FROM, TO), **({"codes": [POINT]} | kw))
    return path, manifest


def rezip(src, dst, change: dict) -> None:
    """Copy a bundle, replacing members' contents (bytes) as a tamperer with zip tools would."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            zout.writestr(info.filename, change.get(info.filename, lambda d: d)(data))


def flip(data: bytes) -> bytes:
    if not data:  # an empty file (no alerts): the one-byte change is a byte added
        return b"\n"
    i = len(data) // 2
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]


def lines_op(op):
    def change(data: bytes) -> bytes:
        lines = data.decode("utf-8").splitlines(keepends=True)
        return "".join(op(lines)).encode("utf-8")
    return change


# -- the happy path ------------------------------------------------------------------------------------------
def test_export_verifies_offline_and_carries_everything(store, key, tmp_path):
    seed(store)
    path, manifest = build(store, key, tmp_path)
    v = verify_bundle(path, key.public_key())
    assert v.ok, v.problems
    assert v.reports == 120
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        base = f"points/{POINT}/"
        assert {"manifest.json", "manifest.sig", "README.txt", base + "sheet.pdf", base + "sheet.xlsx",
                base + "reports.jsonl", base + "alerts.jsonl", base + "silences.jsonl", base + "point.json"} <= names
        m = json.loads(zf.read("manifest.json"))
        rows = [json.loads(x) for x in zf.read(base + "reports.jsonl").splitlines()]
        reg = json.loads(zf.read(base + "point.json"))
        alerts = [json.loads(x) for x in zf.read(base + "alerts.jsonl").splitlines()]
        silences = [json.loads(x) for x in zf.read(base + "silences.jsonl").splitlines()]
    assert m["point"] == POINT and m["profile"] == "lanzhou-basic-2023"
    assert m["generator"]["name"] == "pointwatch-collector" and m["generator"]["version"]
    assert m["period"]["from"] == "2026-01-01T00:00:00Z" and m["period"]["to"] == "2026-01-01T02:00:00Z"
    chain = m["points"][0]["chain"]
    assert chain["intact"] and chain["reports"] == 120 and chain["tail"] == "" and chain["head"] == rows[-1]["digest"]
    assert set(m["files"]) == names - {"manifest.json", "manifest.sig"}
    assert m["signing_key"]["key_id"] == key_id(key.public_key())
    assert m["points"][0]["alerts"] == {"alerts": 1, "silences": 1}
    assert alerts[0]["rule"] == "device_missing" and alerts[0]["resolved_at"] == "2026-01-01T00:40:00.000Z"
    assert silences[0]["reason"] == "更换硒鼓"
    # the stored canonical bodies, byte for byte, in storage order
    assert [json.loads(r["body"])["seq"] for r in rows] == list(range(1, 121))
    assert reg["agents"][0]["fingerprint"]["serial"] == "SN1" and reg["reported_hosts"][0]["hostname"] == "cun-pc"


def test_period_outside_reports_gives_an_empty_but_valid_bundle(store, key, tmp_path):
    seed(store, minutes=5)
    path = tmp_path / "empty.zip"
    with open(path, "wb") as fh:
        m = export(store, key, fh, parse_period("2025-06-01", "2025-06-02"), codes=[POINT])
    assert m["points"][0]["chain"]["reports"] == 0
    assert verify_bundle(path, key.public_key()).ok


# -- tampering: each must fail and name what broke ------------------------------------------------------------
def test_changing_one_byte_of_any_file_fails_naming_it(store, key, tmp_path):
    seed(store, minutes=30)
    path, _ = build(store, key, tmp_path)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    assert len(names) == 10  # policy.json among them
    for name in names:
        bad = tmp_path / "bad.zip"
        rezip(path, bad, {name: flip})
        v = verify_bundle(bad, key.public_key())
        assert not v.ok, name
        expected = "manifest.sig" if name in ("manifest.json", "manifest.sig") else name
        assert any(p.startswith(expected) for p in v.problems), (name, v.problems)


def test_a_flipped_byte_in_the_zip_itself_fails(store, key, tmp_path):
    seed(store, minutes=30)
    path, _ = build(store, key, tmp_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x01
    bad = tmp_path / "raw.zip"
    bad.write_bytes(bytes(data))
    assert not verify_bundle(bad, key.public_key()).ok


def test_dropped_or_reordered_report_lines_break_the_chain(store, key, tmp_path):
    seed(store, minutes=30)
    path, _ = build(store, key, tmp_path)
    name = f"points/{POINT}/reports.jsonl"
    for label, op, line in (("drop", lambda ls: ls[:10] + ls[11:], 11),
                            ("reorder", lambda ls: ls[:10] + [ls[11], ls[10]] + ls[12:], 11)):
        bad = tmp_path / f"{label}.zip"
        rezip(path, bad, {name: lines_op(op)})
        v = verify_bundle(bad, key.public_key())
        assert any(p.startswith(name + ":") and "SHA-256" in p for p in v.problems), (label, v.problems)
        assert any(p.startswith(f"{name} line {line} ") and "hash chain broken" in p for p in v.problems), \
            (label, v.problems)


def test_a_forger_who_re_signs_is_caught_by_the_key_and_by_the_chain(store, key, tmp_path):
    """Drop a report, fix the manifest's digests and counts, re-sign with another key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from collector.evidence.keys import public_b64

    seed(store, minutes=30)
    path, _ = build(store, key, tmp_path)
    name = f"points/{POINT}/reports.jsonl"
    with zipfile.ZipFile(path) as zf:
        lines = zf.read(name).decode().splitlines(keepends=True)
        manifest = json.loads(zf.read("manifest.json"))
    forged = "".join(lines[:5] + lines[6:]).encode()
    import hashlib

    manifest["files"][name] = {"sha256": hashlib.sha256(forged).hexdigest(), "bytes": len(forged)}
    manifest["points"][0]["chain"]["reports"] -= 1
    other = Ed25519PrivateKey.generate()
    manifest["signing_key"] = {"algorithm": "Ed25519", "key_id": key_id(other.public_key()),
                               "public_key": public_b64(other.public_key())}
    mdata = json.dumps(manifest).encode()
    bad = tmp_path / "forged.zip"
    rezip(path, bad, {name: lambda d: forged, "manifest.json": lambda d: mdata,
                      "manifest.sig": lambda d: base64.b64encode(other.sign(mdata))})
    with_key = verify_bundle(bad, key.public_key())
    assert any(p.startswith("manifest.sig: the signature does not verify") for p in with_key.problems)
    self_signed = verify_bundle(bad)  # no key given: the forger's own key checks out, the chain does not
    assert not any(p.startswith("manifest.sig") for p in self_signed.problems)
    assert any(p.startswith(f"{name} line 6 ") and "hash chain broken" in p for p in self_signed.problems)


def test_swapping_the_key_fails(store, key, tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    seed(store, minutes=5)
    path, _ = build(store, key, tmp_path)
    other = Ed25519PrivateKey.generate()
    v = verify_bundle(path, other.public_key())
    assert [p for p in v.problems if p.startswith("manifest.sig: the signature does not verify")], v.problems
    assert key_id(key.public_key()) in v.problems[0]  # names the key the bundle claims
    # a signature by another key over the same manifest fails against the named key too
    bad = tmp_path / "resigned.zip"
    rezip(path, bad, {"manifest.sig": lambda d: base64.b64encode(
        other.sign(zipfile.ZipFile(path).read("manifest.json")))})
    assert not verify_bundle(bad).ok and not verify_bundle(bad, key.public_key()).ok


def test_a_row_edited_in_the_database_is_flagged_by_the_export(store, key, tmp_path):
    from sqlalchemy import select, update

    from collector.store import models as m

    seed(store, minutes=30)
    with store.session() as s:
        victim = s.execute(select(m.Report.id, m.Report.report_id, m.Report.body).order_by(m.Report.id)
                           .offset(7).limit(1)).one()
        # someone "fixes" the printer failure record after the fact
        s.execute(update(m.Report).where(m.Report.id == victim.id)
                  .values(body=victim.body.replace('"status":"ok"', '"status":"fail"', 1)))
    path, manifest = build(store, key, tmp_path)
    chain = manifest["points"][0]["chain"]
    assert not chain["intact"] and not manifest["chain_intact"]
    assert chain["breaks"] == [{"line": 8, "report_id": victim.report_id, "kind": "edited",
                                "problem": chain["breaks"][0]["problem"], "problem_cn": chain["breaks"][0]["problem_cn"]}]
    v = verify_bundle(path, key.public_key())
    assert any(p.startswith(f"points/{POINT}/reports.jsonl line 8 (report {victim.report_id})") for p in v.problems)
    assert not any("SHA-256" in p or p.startswith("manifest.sig") for p in v.problems)  # authentic, but flagged
    require_tool("pdftotext", "poppler-utils")
    with zipfile.ZipFile(path) as zf:
        (tmp_path / "edited.pdf").write_bytes(zf.read(f"points/{POINT}/sheet.pdf"))
    text = subprocess.run(["pdftotext", "-layout", str(tmp_path / "edited.pdf"), "-"], capture_output=True,
                          text=True, check=True).stdout
    assert "数据完整性警告" in text and "1 处断裂" in text and victim.report_id[:8] in text


# -- looking at it ---------------------------------------------------------------------------------------------
def test_pdf_is_chinese_with_embedded_fonts_and_renders(store, key, tmp_path, artifacts_dir):
    from collector.evidence import pdf as pdf_module

    pdftoppm = require_tool("pdftoppm", "poppler-utils")
    require_tool("pdftotext", "poppler-utils")
    require(pdf_module.font_file() is not None,
            f"no Chinese TrueType font to embed (install the Debian package '{pdf_module.FONT_PACKAGE}')")
    seed(store)
    path, manifest = build(store, key, tmp_path)
    assert manifest["pdf_font"]["embedded"] is True and manifest["pdf_font"]["name"].startswith("WenQuanYi")
    pdf = tmp_path / "sheet.pdf"
    with zipfile.ZipFile(path) as zf:
        pdf.write_bytes(zf.read(f"points/{POINT}/sheet.pdf"))
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    for expected in ("自评表", "某村医保服务点", POINT, "项目", "评价指标", "具体内容", "得分", "依据",
                     "专网专机专用记录", "设备清单", "终端登记与指纹", "SN1", "哈希链完整", "人工评审"):
        assert expected in text, expected
    # The 分值 header wraps in its 10 mm column (分 / 值 on two lines): look for it in reading order.
    plain = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "分值" in plain.replace("\n", ""), "分值"
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True).stdout
    font_rows = fonts.splitlines()[2:]
    assert font_rows and all(" yes " in row for row in font_rows), fonts  # every font embedded
    assert "Helvetica" not in fonts
    subprocess.run([pdftoppm, "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile", str(pdf),
                    str(artifacts_dir / "evidence-sheet-page1")], check=True)
    png = artifacts_dir / "evidence-sheet-page1.png"
    assert png.stat().st_size > 20_000


def test_xlsx_has_the_same_table(store, key, tmp_path):
    from openpyxl import load_workbook

    seed(store, minutes=20)
    path, _ = build(store, key, tmp_path)
    with zipfile.ZipFile(path) as zf:
        wb = load_workbook(io.BytesIO(zf.read(f"points/{POINT}/sheet.xlsx")))
    ws = wb["自评表"]
    assert [c.value for c in ws[3]][:6] == ["项目", "评价指标", "具体内容", "分值", "得分", "依据"]
    assert {"专网专机专用", "设备清单", "终端登记", "完整性"} <= set(wb.sheetnames)
    printer = [r for r in wb["设备清单"].iter_rows(values_only=True) if r[0] and "打印机" in r[0]]
    assert printer


def test_region_bundle_has_a_sheet_per_point_and_a_summary(store, key, tmp_path):
    seed(store, minutes=10)
    seed(store, minutes=10, code="620102001002")
    path = tmp_path / "region.zip"
    with open(path, "wb") as fh:
        m = export(store, key, fh, parse_period(FROM, TO), region="甘肃省/兰州市")
    assert [p["code"] for p in m["points"]] == [POINT, "620102001002"]
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
    assert {"summary.pdf", "summary.xlsx", f"points/{POINT}/sheet.pdf", "points/620102001002/sheet.pdf"} <= names
    assert verify_bundle(path, key.public_key()).ok


def test_signing_key_is_private_and_stable(tmp_path):
    k1 = load_or_create(tmp_path / "d")
    assert oct((tmp_path / "d" / "evidence-signing-key.pem").stat().st_mode & 0o777) == "0o600"
    k2 = load_or_create(tmp_path / "d")
    assert public_pem(k1.public_key()) == public_pem(k2.public_key())


@pytest.fixture
def no_cjk_font(monkeypatch):
    """The evidence PDF on a machine without any Chinese TrueType font (the font search finds nothing)."""
    from collector.evidence import pdf

    monkeypatch.setattr(pdf, "font_file", lambda: None)
    pdf.pdf_font.cache_clear()
    yield
    pdf.pdf_font.cache_clear()  # the next export registers the installed font again


def test_without_a_cjk_font_the_pdf_uses_stsong_light(no_cjk_font, store, key, tmp_path, caplog):
    seed(store, minutes=20)
    with caplog.at_level("WARNING", logger="collector.evidence.pdf"):
        path, manifest = build(store, key, tmp_path)
        build(store, key, tmp_path, name="again.zip")
    warnings = [r for r in caplog.records if r.name == "collector.evidence.pdf"]
    assert len(warnings) == 1 and "STSong-Light" in warnings[0].getMessage()
    assert "fonts-wqy-microhei" in warnings[0].getMessage()
    assert manifest["pdf_font"] == {"name": "STSong-Light", "file": None, "embedded": False}
    assert verify_bundle(path, key.public_key()).ok
    pdffonts = require_tool("pdffonts", "poppler-utils")
    pdftotext = require_tool("pdftotext", "poppler-utils")
    sheet = tmp_path / "sheet.pdf"
    with zipfile.ZipFile(path) as zf:
        sheet.write_bytes(zf.read(f"points/{POINT}/sheet.pdf"))
    fonts = subprocess.run([pdffonts, str(sheet)], capture_output=True, text=True, check=True).stdout
    rows = fonts.splitlines()[2:]
    assert len(rows) == 1 and rows[0].split()[:2] == ["STSong-Light", "CID"] and " no " in rows[0], fonts
    # A reader without that font substitutes its own; poppler needs its Adobe-GB1 language pack for it.
    require(Path("/usr/share/poppler/cMap/Adobe-GB1").is_dir(),
            "poppler's Adobe-GB1 language pack not found (install the Debian package 'poppler-data')")
    text = subprocess.run([pdftotext, "-layout", str(sheet), "-"], capture_output=True, text=True,
                          check=True).stdout
    for expected in ("自评表", "某村医保服务点", POINT, "专网专机专用记录", "设备清单", "终端登记与指纹", "北京时间"):
        assert expected in text, expected


def test_sheet_scores_agree_with_the_scores_page(store, key, tmp_path):
    """The evidence reads results in index order (check, time) for speed; the score must not change."""
    from collector.scoring.scores import point_sheet

    seed(store, minutes=120)
    _, manifest = build(store, key, tmp_path)
    period = parse_period(FROM, TO)
    page = point_sheet(store, POINT, period.start, period.end)
    assert manifest["points"][0]["score"]["earned"] == page.earned
    assert manifest["points"][0]["score"]["automatic_points"] == page.automatic_points
    from collector.evidence.sheet import build_sheet, lookback
    from collector.store import queries as q

    rows = q.stream_observations(store, POINT, period.start - lookback(60), period.end)
    ours = build_sheet("lanzhou-basic-2023", (r[:4] for r in rows), period, 60, silent_after=3 * 60,
                       known_from=START, now=datetime.now(timezone.utc),
                       level=level_of(REGION))
    theirs = {i.id: i for i in page.items}
    for row in ours.rows:
        assert row.state == theirs[row.item_id].state and row.earned == theirs[row.item_id].earned, row.item_id
