"""The evidence API and CLI: reviewer-only streamed bundles, the public key, the audit record, verify."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from collector.accounts import users
from collector.app import create_app
from collector.cli import main
from collector.evidence.keys import parse_public
from collector.evidence.verify import verify_bundle
from collector.settings import Settings
from collector.store import models as m
from collector.store import points
from tests.helpers import POINT
from tests.test_evidence_bundle import FROM, TO, no_cjk_font, seed  # noqa: F401 (no_cjk_font: a fixture)


@pytest.fixture
def api(tmp_path, store):  # the store fixture: on SQLite and on PostgreSQL
    settings = Settings(data_dir=tmp_path / "data")
    app = create_app(settings, store=store)
    seed(store, minutes=20)
    points.upsert_point(store, "330100001001", "别处的服务点", "浙江省/杭州市/某区")
    tokens = {"reviewer": users.create_token(store, "reviewer", "甘肃省/兰州市"),
              "viewer": users.create_token(store, "viewer"),
              "far_reviewer": users.create_token(store, "reviewer", "浙江省")}
    with TestClient(app) as client:
        yield client, tokens, store, settings


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def test_reviewer_downloads_a_bundle_that_verifies_with_the_published_key(api, tmp_path):
    client, tokens, store, _ = api
    pem = client.get("/api/v1/evidence/public-key")
    assert pem.status_code == 200 and pem.text.startswith("-----BEGIN PUBLIC KEY-----")
    r = client.get(f"/api/v1/evidence/points/{POINT}.zip", params={"from": FROM, "to": TO},
                   headers=auth(tokens["reviewer"]))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip" and "attachment" in r.headers["content-disposition"]
    (tmp_path / "dl.zip").write_bytes(r.content)
    v = verify_bundle(tmp_path / "dl.zip", parse_public(pem.text))
    assert v.ok and v.reports == 20, v.problems
    with store.session() as s:
        entry = s.scalars(select(m.AuditEntry).where(m.AuditEntry.action == "evidence.export")).one()
    assert entry.target == f"point:{POINT}" and entry.details["reports"] == 20 and entry.actor.startswith("token:")


def test_no_cjk_font_is_no_500(no_cjk_font, api, tmp_path):  # noqa: F811 (the imported fixture)
    client, tokens, _, _ = api
    r = client.get(f"/api/v1/evidence/points/{POINT}.zip", params={"from": FROM, "to": TO},
                   headers=auth(tokens["reviewer"]))
    assert r.status_code == 200, r.text
    (tmp_path / "dl.zip").write_bytes(r.content)
    with zipfile.ZipFile(tmp_path / "dl.zip") as zf:
        manifest = json.loads(zf.read("manifest.json"))
        assert zf.read(f"points/{POINT}/sheet.pdf").startswith(b"%PDF-")
    assert manifest["pdf_font"] == {"name": "STSong-Light", "file": None, "embedded": False}


def test_region_bundle_over_http(api):
    client, tokens, _, _ = api
    r = client.get("/api/v1/evidence/region.zip", params={"region": "甘肃省", "from": FROM, "to": TO},
                   headers=auth(tokens["reviewer"]))
    assert r.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    assert "summary.pdf" in names and f"points/{POINT}/sheet.pdf" in names


def test_only_reviewers_within_their_region(api):
    client, tokens, _, _ = api
    url, q = f"/api/v1/evidence/points/{POINT}.zip", {"from": FROM, "to": TO}
    assert client.get(url, params=q).status_code == 401
    assert client.get(url, params=q, headers=auth(tokens["viewer"])).status_code == 403
    assert client.get(url, params=q, headers=auth(tokens["far_reviewer"])).status_code == 404
    assert client.get("/api/v1/evidence/region.zip", params={"region": "甘肃省", **q},
                      headers=auth(tokens["far_reviewer"])).status_code == 404
    bad = client.get(url, params={"from": "2026-02-01", "to": "2026-01-01"}, headers=auth(tokens["reviewer"]))
    assert bad.status_code == 422 and "empty" in bad.text


def test_cli_export_public_key_and_verify(api, tmp_path, capsys, db_url, monkeypatch):
    _, _, store, settings = api
    monkeypatch.setenv("POINTWATCH_DATABASE_URL", db_url)  # the command line on the same store as the API
    data = ["--data-dir", str(settings.data_dir)]
    out = tmp_path / "cli.zip"
    assert main(data + ["evidence", "export", "--point", POINT, "--from", FROM, "--to", TO, "--out", str(out)]) == 0
    assert main(data + ["evidence", "public-key"]) == 0
    key_file = tmp_path / "collector.pem"
    key_file.write_text(capsys.readouterr().out.split("已导出")[-1].split("\n", 1)[1])
    assert main(["evidence", "verify", str(out), "--public-key", str(key_file)]) == 0
    assert "OK: signature valid" in capsys.readouterr().out
    with zipfile.ZipFile(out) as zin, zipfile.ZipFile(tmp_path / "bad.zip", "w") as zout:
        for info in zin.infolist():
            body = zin.read(info.filename)
            zout.writestr(info.filename, body.replace(b"%%EOF", b"%%EOX") if info.filename.endswith(".pdf") else body)
    assert main(["evidence", "verify", str(tmp_path / "bad.zip"), "--public-key", str(key_file)]) == 1
    text = capsys.readouterr().out
    assert f"FAILED: points/{POINT}/sheet.pdf: SHA-256" in text and "核验失败" in text
    assert main(data + ["evidence", "export", "--point", "nope", "--from", FROM, "--to", TO,
                        "--out", str(tmp_path / "x.zip")]) == 1
    assert "no point with code 'nope'" in capsys.readouterr().err and not (tmp_path / "x.zip").exists()
