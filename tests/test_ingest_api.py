"""POST /api/v1/reports: accepted once, and every kind of bad input refused with nothing stored."""

from __future__ import annotations

import gzip
import json

import pytest
from fastapi.testclient import TestClient

from collector.accounts import users
from collector.app import create_app
from collector.settings import Settings
from collector.store import points, queries
from tests.helpers import POINT, REGION, report_json


@pytest.fixture
def api(tmp_path, store):  # the store fixture: on SQLite and on PostgreSQL
    settings = Settings(data_dir=tmp_path / "data")
    app = create_app(settings, store=store)
    points.upsert_point(store, POINT, "某村医保服务点", REGION)
    points.upsert_point(store, "620102001002", "另一个服务点", REGION)
    tokens = {
        "agent": users.create_token(store, "agent", point_code=POINT),
        "other_agent": users.create_token(store, "agent", point_code="620102001002"),
        "admin": users.create_token(store, "admin"),
    }
    with TestClient(app) as client:
        yield client, tokens, store


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def stored_reports(store, code=POINT):
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc)
    return queries.reports_for_point(store, code, now - timedelta(days=1), now + timedelta(days=1))


def test_report_is_stored_once_and_read_back(api):
    client, tokens, store = api
    body = report_json(statuses={"net.core.tcp": "fail", "net.core.icmp": "ok"})
    r = client.post("/api/v1/reports", json=body, headers=auth(tokens["agent"]))
    assert r.status_code == 202 and r.json() == {"accepted": 1, "duplicates": 0}
    again = client.post("/api/v1/reports", json={"reports": [body]}, headers=auth(tokens["agent"]))
    assert again.status_code == 202 and again.json() == {"accepted": 0, "duplicates": 1}
    point = client.get(f"/api/v1/points/{POINT}", headers=auth(tokens["admin"])).json()
    by_check = {x["check"]: x for x in point["results"]}
    assert by_check["net.core.tcp"]["status"] == "fail" and point["state"] == "fail"
    assert by_check["net.core.icmp"]["value"] == pytest.approx(0.012)
    assert [x["report_id"] for x in stored_reports(store)] == [body["report_id"]]


def test_batch_and_gzip(api):
    client, tokens, store = api
    batch = {"reports": [report_json(seq=i) for i in range(1, 4)]}
    raw = gzip.compress(json.dumps(batch).encode())
    r = client.post("/api/v1/reports", content=raw,
                    headers={**auth(tokens["agent"]), "Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert r.status_code == 202 and r.json()["accepted"] == 3
    assert [x["seq"] for x in stored_reports(store)] == [1, 2, 3]


def test_backlog_report_does_not_roll_back_latest_state(api):
    from datetime import datetime, timedelta, timezone

    client, tokens, _ = api
    now = datetime.now(timezone.utc)
    fresh = report_json(seq=2, statuses={"net.core.tcp": "ok"}, collected_at=now)
    old = report_json(seq=1, statuses={"net.core.tcp": "fail"}, collected_at=now - timedelta(hours=2))
    for body in (fresh, old):
        assert client.post("/api/v1/reports", json=body, headers=auth(tokens["agent"])).status_code == 202
    point = client.get(f"/api/v1/points/{POINT}", headers=auth(tokens["admin"])).json()
    assert {x["check"]: x["status"] for x in point["results"]}["net.core.tcp"] == "ok"


@pytest.mark.parametrize("mutate, field", [
    (lambda b: b.pop("report_id"), "report_id"),
    (lambda b: b.update(seq="many"), "seq"),
    (lambda b: b["results"][0].update(status="fine"), "results[0].status"),
    (lambda b: b.update(collected_at="yesterday"), "collected_at"),
    (lambda b: b.update(collected_at="2026-01-01T08:00:00"), "collected_at"),
    (lambda b: b.update(report_id="not-a-uuid"), "report_id"),
    (lambda b: b["results"][0].update(check="NET CORE"), "results[0].check"),
    (lambda b: b["host"].update(hostname=None), "host.hostname"),
])
def test_malformed_report_is_422_naming_the_field(api, mutate, field):
    client, tokens, store = api
    body = report_json()
    mutate(body)
    r = client.post("/api/v1/reports", json=body, headers=auth(tokens["agent"]))
    assert r.status_code == 422, r.text
    assert field in [p["field"] for p in r.json()["detail"]], r.json()
    assert stored_reports(store) == []


def test_batch_with_one_bad_report_stores_none(api):
    client, tokens, store = api
    good, bad = report_json(seq=1), report_json(seq=2)
    bad["results"][0]["status"] = "fine"
    r = client.post("/api/v1/reports", json={"reports": [good, bad]}, headers=auth(tokens["agent"]))
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "reports[1].results[0].status"
    assert stored_reports(store) == []


@pytest.mark.parametrize("raw", [b"{not json", b"[1,2]", b'{"seq": NaN}', b"[" * 100000])
def test_not_json_is_422(api, raw):
    client, tokens, store = api
    r = client.post("/api/v1/reports", content=raw, headers={**auth(tokens["agent"]), "Content-Type": "application/json"})
    assert r.status_code == 422
    assert stored_reports(store) == []


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}])
def test_missing_or_wrong_token_is_401(api, headers):
    client, _, store = api
    r = client.post("/api/v1/reports", json=report_json(), headers=headers)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert stored_reports(store) == []


def test_body_over_1_mib_is_413(api):
    client, tokens, store = api
    body = report_json()
    body["results"][0]["message"] = "x" * (1024 * 1024)
    r = client.post("/api/v1/reports", json=body, headers=auth(tokens["agent"]))
    assert r.status_code == 413
    bomb = gzip.compress(b'{"a":"' + b"0" * (50 * 1024 * 1024) + b'"}')
    r = client.post("/api/v1/reports", content=bomb, headers={**auth(tokens["agent"]), "Content-Encoding": "gzip"})
    assert r.status_code == 413
    assert stored_reports(store) == []


def test_report_for_another_point_is_403(api):
    client, tokens, store = api
    r = client.post("/api/v1/reports", json=report_json(point_code=POINT), headers=auth(tokens["other_agent"]))
    assert r.status_code == 403 and "620102001002" in r.text
    assert stored_reports(store) == []


def test_only_agents_send_reports(api):
    client, tokens, store = api
    assert client.post("/api/v1/reports", json=report_json(), headers=auth(tokens["admin"])).status_code == 403


def test_collector_keeps_serving_after_bad_input(api):
    client, tokens, _ = api
    client.post("/api/v1/reports", content=b"\xff\xfe garbage", headers=auth(tokens["agent"]))
    assert client.get("/healthz").text == "ok"
    assert client.post("/api/v1/reports", json=report_json(), headers=auth(tokens["agent"])).status_code == 202


def test_ingest_rejections_are_counted_by_reason(api):
    client, tokens, _ = api
    client.post("/api/v1/reports", content=b"{", headers=auth(tokens["agent"]))
    text = client.get("/metrics").text
    assert 'pointwatch_collector_ingest_rejected_total{reason="bad_json"}' in text
