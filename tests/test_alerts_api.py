"""Alerts through the running app: HTTP ingest → worker → notifier, GET /api/v1/alerts and silences with
region scoping and the audit log; and two collectors on one PostgreSQL raising and sending an alert once."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from agent.wire import report_to_dict
from collector.accounts import users
from collector.alerts import AlertEngine, parse
from collector.alerts.dispatch import dispatch_all
from collector.app import create_app
from collector.settings import Settings
from collector.store import Store, points
from collector.store import models as m
from collector.store.models import Alert, Notification
from tests.helpers import ingest, make_report

POINT, REGION = "620123001001", "甘肃省/兰州市/榆中县/城关镇/东关村"


@pytest.fixture
def api(tmp_path, robot):
    settings = Settings(data_dir=tmp_path / "data", public_url="http://10.10.1.5:8443",
                        extra={"alerts": {"tick": "1s", "notifiers": [
                            {"name": "信息科", "type": "webhook", "url": robot.url + "/hook"}]}})
    app = create_app(settings)
    store = app.state.store
    points.upsert_point(store, POINT, "东关村医保服务点", REGION)
    points.upsert_point(store, "620102001001", "城关区某点", "甘肃省/兰州市/城关区/某镇/某村")
    tokens = {"agent": users.create_token(store, "agent", point_code=POINT), "admin": users.create_token(store, "admin"),
              "county_admin": users.create_token(store, "admin", region_path="甘肃省/兰州市/榆中县"),
              "other_admin": users.create_token(store, "admin", region_path="甘肃省/兰州市/城关区"),
              "viewer": users.create_token(store, "viewer", region_path="甘肃省/兰州市/榆中县"),
              "other_viewer": users.create_token(store, "viewer", region_path="甘肃省/兰州市/城关区")}
    with TestClient(app) as client:
        yield client, {k: {"Authorization": f"Bearer {v}"} for k, v in tokens.items()}, store
    store.close()


def send(client, headers, statuses: dict, seq: int = 1):
    body = report_to_dict(make_report(point_code=POINT, seq=seq, statuses=statuses))
    r = client.post("/api/v1/reports", json=body, headers=headers["agent"])
    assert r.status_code == 202, r.text


def test_ingest_raises_an_alert_that_reaches_the_webhook_and_the_api(api, robot):
    client, h, _ = api
    robot.delay_s = 1.0  # a slow receiver: ingest must answer without waiting for it
    send(client, h, {"isolation.internet": "fail"})
    send(client, h, {"isolation.internet": "fail"}, seq=2)
    assert robot.of("hook") == []  # both reports were accepted while the notifier was still busy
    msg = robot.wait_for("hook")[0]["body"]
    assert (msg["event"], msg["rule"], msg["point_code"]) == ("firing", "internet_reachable", POINT)
    alerts = client.get("/api/v1/alerts", headers=h["viewer"]).json()["alerts"]
    assert [(a["rule"], a["state"], a["point_name"]) for a in alerts] == [
        ("internet_reachable", "firing", "东关村医保服务点")]
    assert client.get("/api/v1/alerts", headers=h["other_viewer"]).json()["alerts"] == []
    assert client.get("/api/v1/alerts?state=bogus", headers=h["viewer"]).status_code == 422
    import re
    import time

    deadline = time.monotonic() + 10
    while True:  # the receiver has the message a moment before the sender records it
        metrics = client.get("/metrics").text
        sent = re.search(r'pointwatch_collector_notifications_sent_total\{notifier="webhook"\} (\S+)', metrics)
        if (sent and float(sent.group(1)) >= 1) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert sent and float(sent.group(1)) >= 1
    assert 'pointwatch_collector_notifier_outbox{notifier="webhook"}' in metrics
    assert 'pointwatch_alerts_firing{check="isolation.internet",point="620123001001"' in metrics


def test_silences_are_admin_only_scoped_and_audited(api):
    client, h, store = api
    body = {"point": POINT, "rule": "forbidden_software", "reason": "现场升级医保客户端", "duration": "2h"}
    assert client.post("/api/v1/silences", json=body, headers=h["viewer"]).status_code == 403
    assert client.post("/api/v1/silences", json=body, headers=h["other_admin"]).status_code == 404
    assert client.post("/api/v1/silences", json={**body, "point": None, "region": REGION},
                       headers=h["other_admin"]).status_code == 403
    assert client.post("/api/v1/silences", json={**body, "duration": None}, headers=h["county_admin"]).status_code == 422
    r = client.post("/api/v1/silences", json=body, headers=h["county_admin"])
    assert r.status_code == 201, r.text
    sil = r.json()
    assert sil["region"] == REGION and sil["reason"] == "现场升级医保客户端"
    assert [s["id"] for s in client.get("/api/v1/silences", headers=h["viewer"]).json()["silences"]] == [sil["id"]]
    assert client.get("/api/v1/silences", headers=h["other_viewer"]).json()["silences"] == []
    assert client.delete(f"/api/v1/silences/{sil['id']}", headers=h["other_admin"]).status_code == 404
    assert client.delete(f"/api/v1/silences/{sil['id']}", headers=h["county_admin"]).status_code == 200
    assert client.get("/api/v1/silences", headers=h["viewer"]).json()["silences"] == []
    with store.session() as s:
        audit = [(a.action, a.actor) for a in s.scalars(select(m.AuditEntry).order_by(m.AuditEntry.id))]
    assert [a for a, _ in audit if a.startswith("silence.")] == ["silence.create", "silence.expire"]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_collectors_on_one_postgresql_raise_and_send_once(db_url, robot):
    stores = [Store(db_url), Store(db_url)]
    stores[0].create_schema()
    points.upsert_point(stores[0], POINT, "东关村医保服务点", REGION)
    cfg = parse({"notifiers": [{"name": "hook", "type": "webhook", "url": robot.url + "/hook"}]})
    engines = [AlertEngine(s, cfg) for s in stores]
    ingest(stores[0], [make_report(point_code=POINT, statuses={"usage.processes": "fail"})])
    barrier = threading.Barrier(4)
    errors = []

    def work(engine):
        try:
            barrier.wait()
            for _ in range(5):
                engine.evaluate_point(POINT)
                dispatch_all(engine)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(e,)) for e in engines * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with stores[0].session() as s:
        alerts = list(s.scalars(select(Alert)))
        notes = list(s.scalars(select(Notification)))
    assert [(a.rule, a.state) for a in alerts] == [("forbidden_software", "firing")]
    assert [(n.notifier, n.status) for n in notes] == [("hook", "sent")]
    assert len(robot.of("hook")) == 1
    for s in stores:
        s.close()
