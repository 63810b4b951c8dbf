"""Administration over HTTP (the JSON API and the pages' forms) on the real app and store (SQLite and
PostgreSQL): points registered, changed and imported within the admin's region, all or nothing; tokens
listed and revoked within it; enrolment codes with the agent's command; every write audited, every form
guarded by the session's CSRF token and the role."""

from __future__ import annotations

import io
import re

import pytest
from fastapi.testclient import TestClient
from openpyxl import Workbook

from collector.accounts import users
from collector.app import create_app
from collector.settings import Settings
from collector.store import audit, points, queries
from tests.helpers import ORIGIN, session_headers, web_login

COUNTY = "甘肃省/兰州市/城关区"
OTHER = "甘肃省/兰州市/七里河区"
PW = "long-enough-pw"


@pytest.fixture
def world(store, tmp_path):
    points.upsert_point(store, "620102000001", "本县的点", COUNTY + "/某镇/某村")
    points.upsert_point(store, "620103000001", "别县的点", OTHER + "/某镇/某村")
    users.create_user(store, "county-admin", PW, "admin", COUNTY, person="甲")
    app = create_app(Settings(data_dir=tmp_path / "data"), store=store)
    client = TestClient(app, follow_redirects=False)
    assert web_login(client, "county-admin", PW).status_code == 303
    return client, store, session_headers(client)


def _actions(store, action: str) -> list:
    return [e for e in audit.audit_entries(store, "/", 500, None, action)]


def test_register_and_change_a_point_within_the_region(world):
    client, store, headers = world
    body = {"code": "620102000002", "name": "新登记的点", "region": COUNTY + "/乙镇", "expected_devices": "kiosk:1, 打印机:2",
            "report_interval_s": 30}
    r = client.post("/api/v1/points", json=body, headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["expected_devices"] == [{"kind": "kiosk", "count": 1}, {"kind": "printer", "count": 2}]
    entry = _actions(store, "point.upsert")[0]
    assert entry["actor"] == "user:county-admin" and entry["target"] == "point:620102000002" and entry["details"]["created"]

    again = client.post("/api/v1/points", json=body, headers=headers)
    assert again.status_code == 422 and "已被使用" in again.json()["detail"]["problems"]["code"]
    assert client.post("/api/v1/points", json={**body, "code": "620102000003", "region": OTHER},
                       headers=headers).status_code == 403
    bad = client.post("/api/v1/points", json={**body, "code": "a b", "profile": "nope", "expected_devices": "飞机"},
                      headers=headers)
    assert bad.status_code == 422 and set(bad.json()["detail"]["problems"]) == {"code", "profile", "expected_devices"}

    changed = client.put("/api/v1/points/620102000002", json={"name": "改名了", "region": COUNTY + "/丙镇"},
                         headers=headers)
    assert changed.status_code == 200, changed.text
    summary = queries.point_summary(store, "620102000002")
    assert summary.name == "改名了" and summary.region_path == COUNTY + "/丙镇" and summary.report_interval_s == 60
    assert client.put("/api/v1/points/620103000001", json={"name": "x", "region": COUNTY},
                      headers=headers).status_code == 404  # another county's point does not exist here
    assert client.put("/api/v1/points/620102000001", json={"name": "搬走", "region": OTHER},
                      headers=headers).status_code == 403  # nor can one be moved out of the region
    assert queries.point_summary(store, "620103000001").name == "别县的点"


def _xlsx(rows) -> bytes:
    wb = Workbook()
    for row in rows:
        wb.active.append(list(row))
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def test_import_lists_every_problem_and_writes_nothing_until_clean(world):
    client, store, headers = world
    before = len(queries.list_points(store))
    bad = ("编码,名称,区域,标准\n"
           f"620102000010,好的一行,{COUNTY}/甲镇,national-basic\n"
           f",没有编码,{COUNTY}/甲镇,national-basic\n"
           f"620102000012,别县,{OTHER}/乙镇,national-basic\n"
           f"620103000001,别县已有的点,{COUNTY}/甲镇,national-basic\n").encode("gb18030")
    r = client.post("/api/v1/points/import", files={"file": ("服务点.csv", bad, "text/csv")}, headers=headers)
    assert r.status_code == 422
    problems = r.json()["detail"]["problems"]
    assert problems[0] == "第 3 行，列 code：不能为空"
    assert problems[1].startswith("第 4 行，列 region：") and "不在您的管辖区域" in problems[1]
    assert len(queries.list_points(store)) == before
    # every row clean but one taking another county's code: refused too, still nothing written
    r = client.post("/api/v1/points/import", files={"file": ("a.csv", b"\n".join(bad.split(b"\n")[:2] + [
        bad.split(b"\n")[4]]), "text/csv")}, headers=headers)
    assert r.status_code == 422 and "第 3 行，列 code：" in r.json()["detail"]["problems"][0]
    assert len(queries.list_points(store)) == before

    good = _xlsx([("code", "name", "region", "profile", "expected_devices"),
                  ("620102000010", "甲村", f"{COUNTY}/甲镇", "national-basic", "kiosk:1"),
                  ("620102000001", "本县的点（改）", f"{COUNTY}/某镇/某村", "national-basic", "")])
    dry = client.post("/api/v1/points/import?dry_run=true", files={"file": ("a.xlsx", good)}, headers=headers)
    assert dry.json() == {"rows": 2, "dry_run": True} and len(queries.list_points(store)) == before
    r = client.post("/api/v1/points/import", files={"file": ("a.xlsx", good)}, headers=headers)
    assert r.json() == {"rows": 2, "created": 1, "updated": 1, "policies_issued": 0}  # no policy covers them yet
    assert _actions(store, "points.import")[0]["target"] == "upload:a.xlsx"
    junk = client.post("/api/v1/points/import", files={"file": ("a.xlsx", b"not a zip")}, headers=headers)
    assert junk.status_code == 422 and "XLSX" in junk.json()["detail"]["problems"][0]


def test_a_spreadsheet_bigger_than_a_form_uploads_through_the_page(world):
    client, store, headers = world
    rows = "\n".join(f"6201020{i:05d},第{i}号服务点,{COUNTY}/大镇/第{i}村,national-basic" for i in range(100, 1100))
    data = ("code,name,region,profile\n" + rows).encode()
    assert len(data) > 64 * 1024  # over every other form's cap
    form = {"csrf_token": headers["X-CSRF-Token"]}
    page = client.post("/admin/points/import", data=form, files={"file": ("big.csv", data, "text/csv")},
                       headers={"Origin": ORIGIN})
    assert page.status_code == 200 and "导入完成：1000 行，新增 1000" in page.text
    # the same upload from another origin, or without the session's token, is refused and writes nothing
    for origin, token in (("http://127.0.0.1:9999", form["csrf_token"]), (ORIGIN, "")):
        refused = client.post("/admin/points/import", data={"csrf_token": token},
                              files={"file": ("big2.csv", data.replace(b"6201020", b"6201021"), "text/csv")},
                              headers={"Origin": origin})
        assert refused.status_code in (403, 413)
    assert not [p for p in queries.list_points(store) if p.code.startswith("6201021")]


def test_tokens_are_listed_and_revoked_within_the_region(world, store):
    client, _, headers = world
    mine = users.create_token(store, "viewer", COUNTY + "/某镇", person="大屏")
    theirs = users.create_token(store, "viewer", OTHER, person="别县大屏")
    listed = client.get("/api/v1/tokens", headers=headers).json()["tokens"]
    assert {t["region"] for t in listed} == {COUNTY + "/某镇"} and not any("token" in t for t in listed)
    other_id = next(t["id"] for t in __import__("collector.store.people", fromlist=["x"]).list_tokens(store)
                    if t["region"] == OTHER)
    assert client.post(f"/api/v1/tokens/{other_id}/revoke", headers=headers).status_code == 404
    r = client.post(f"/api/v1/tokens/{listed[0]['id']}/revoke", headers=headers)
    assert r.status_code == 200
    assert client.post(f"/api/v1/tokens/{listed[0]['id']}/revoke", headers=headers).status_code == 409
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {mine}"}).status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {theirs}"}).status_code == 200
    assert _actions(store, "token.revoke")[0]["actor"] == "user:county-admin"


def test_enrolment_code_comes_with_the_agent_command(world):
    client, store, headers = world
    r = client.post("/api/v1/enroll-codes", json={"point": "620102000001"}, headers=headers)
    assert r.status_code == 201
    doc = r.json()
    assert re.fullmatch(r"[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}", doc["code"])
    linux = doc["commands"]["linux"].split()
    assert linux[2:4] == ["enroll", "--config"] and linux[linux.index("--code") + 1] == doc["code"]
    assert linux[linux.index("--collector") + 1] == "http://testserver"
    assert f"--code {doc['code']}" in doc["commands"]["windows"]
    assert client.post("/api/v1/enroll-codes", json={"point": "620103000001"}, headers=headers).status_code == 404
    page = client.post("/admin/points/620102000001/enroll-code", data={"csrf_token": headers["X-CSRF-Token"]},
                       headers={"Origin": ORIGIN})
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert "pointwatch-agent enroll" in page.text


def test_page_forms_need_the_session_token_and_an_admin(world, store):
    client, _, headers = world
    form = {"code": "620102000099", "name": "跨站", "region": COUNTY}
    assert client.post("/admin/points", data=form, headers={"Origin": ORIGIN}).status_code == 403
    assert client.post("/admin/points", data={**form, "csrf_token": headers["X-CSRF-Token"]},
                       headers={"Origin": "http://evil.example"}).status_code == 403
    assert queries.point_summary(store, "620102000099") is None
    users.create_user(store, "county-viewer", PW, "viewer", COUNTY, person="乙")
    client.cookies.clear()
    web_login(client, "county-viewer", PW)
    token = session_headers(client)["X-CSRF-Token"]
    for path, data in (("/admin/points", form), ("/admin/tokens", {"role": "viewer", "region": COUNTY, "person": "x"}),
                       ("/admin/users", {"username": "z", "role": "viewer", "region": COUNTY}),
                       ("/admin/points/620102000001/enroll-code", {})):
        assert client.post(path, data={**data, "csrf_token": token}, headers={"Origin": ORIGIN}).status_code == 403
    assert "/admin/points" not in client.get("/").text  # no admin link either


def test_users_created_disabled_and_reset_through_the_page(world, store):
    client, _, headers = world
    post = {"csrf_token": headers["X-CSRF-Token"]}
    r = client.post("/admin/users", data={**post, "username": "town-viewer", "person": "丙", "role": "viewer",
                                          "region": COUNTY + "/某镇", "password": PW, "password2": PW},
                    headers={"Origin": ORIGIN})
    assert r.status_code == 303
    outside = client.post("/admin/users", data={**post, "username": "far", "person": "丁", "role": "viewer",
                                                "region": OTHER, "password": PW, "password2": PW},
                          headers={"Origin": ORIGIN})
    assert outside.status_code == 200 and "不在您的管辖区域" in outside.text
    self_reviewer = client.post("/admin/users", data={**post, "username": "me-too", "person": "甲", "role": "reviewer",
                                                      "region": COUNTY, "password": PW, "password2": PW},
                                headers={"Origin": ORIGIN})
    assert "操作、管理、监督" in self_reviewer.text  # the duty split: an admin cannot make itself a reviewer
    assert client.post("/admin/users/town-viewer/password", data={**post, "password": "another-password"},
                       headers={"Origin": ORIGIN}).status_code == 303
    assert client.post("/admin/users/town-viewer/disable", data=post, headers={"Origin": ORIGIN}).status_code == 303
    names = {e["action"] for e in audit.audit_entries(store, "/", 50, None, None) if e["target"] == "user:town-viewer"}
    assert {"user.create", "user.password", "user.disable"} <= names


def test_upload_caps_hold_before_the_body_is_read(world):
    client, store, headers = world
    big = b"code,name,region,profile\n" + b"x" * (5 * 1024 * 1024)
    anonymous = TestClient(client.app)
    for path in ("/api/v1/points/import", "/admin/points/import"):
        assert anonymous.post(path, files={"file": ("a.csv", big)}).status_code == 413  # nobody: 4 KiB at most
    huge = b"code,name,region,profile\n" + b"x" * (9 * 1024 * 1024)
    assert client.post("/api/v1/points/import", files={"file": ("a.csv", huge)}, headers=headers).status_code == 413
    assert client.post("/api/v1/points/import", files={"file": ("a.csv", big)}, headers=headers).status_code == 422
