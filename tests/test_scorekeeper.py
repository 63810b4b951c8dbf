"""Now-scores kept current after ingest and when a point falls silent; /metrics exports them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from collector.accounts import users
from collector.scoring.scorekeeper import rescore
from collector.scoring.scores import point_sheet
from collector.store import points, pointscores
from tests.helpers import ingest, make_report

POINT, REGION = "620123001001", "甘肃省/兰州市/榆中县/城关镇/东关村"
HEALTHY = {"net.core.tcp": "ok", "net.core.icmp": "ok", "net.core.dns": "ok", "net.core.https": "ok",
           "isolation.internet": "ok", "isolation.interfaces": "ok", "identity.fingerprint": "ok",
           "usage.processes": "ok", "usage.removable_media": "ok", "usage.accounts": "ok",
           "usage.listening_ports": "ok", "device.kiosk": "ok", "device.display": "ok"}


def test_scores_follow_ingest_and_silence(store):
    points.upsert_point(store, POINT, "东关村医保服务点", REGION, profile="lanzhou-basic-2023", report_interval_s=60)
    assert pointscores.points_needing_scores(store) == [POINT]  # never scored
    now = datetime.now(timezone.utc)
    ingest(store, [make_report(POINT, statuses=HEALTHY, collected_at=now)], received_at=now)
    assert rescore(store, [POINT], now=now) == 1
    [(code, profile, earned, items)] = pointscores.metrics_compliance(store, "甘肃省/兰州市/榆中县")
    assert (code, profile) == (POINT, "lanzhou-basic-2023")
    assert earned == point_sheet(store, POINT).earned > 0  # the same sheet the API shows
    assert dict(items)["network.core"] is True
    assert pointscores.metrics_compliance(store, "甘肃省/兰州市/城关区") == []
    assert pointscores.points_needing_scores(store, now=now + timedelta(seconds=30)) == []

    # Silent past three intervals: the point needs rescoring, and stale results earn nothing.
    later = now + timedelta(hours=2)
    assert pointscores.points_needing_scores(store, now=later) == [POINT]
    rescore(store, [POINT], now=later)
    [(_, _, earned_silent, items_silent)] = pointscores.metrics_compliance(store)
    assert earned_silent < earned and dict(items_silent)["network.core"] is False
    assert pointscores.points_needing_scores(store, now=later + timedelta(seconds=1)) == []


def test_metrics_export_the_kept_scores(tmp_path, store):
    from fastapi.testclient import TestClient

    from collector.app import create_app
    from collector.settings import Settings

    app = create_app(Settings(data_dir=tmp_path / "data"), store=store)
    points.upsert_point(store, POINT, "东关村医保服务点", REGION, profile="lanzhou-basic-2023")
    token = users.create_token(store, "agent", point_code=POINT)
    from agent.wire import report_to_dict

    with TestClient(app) as client:
        r = client.post("/api/v1/reports", json=report_to_dict(make_report(POINT, statuses=HEALTHY)),
                        headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 202
        import time

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not pointscores.metrics_compliance(store):
            time.sleep(0.05)
        text = client.get("/metrics").text
    assert f'pointwatch_compliance_score{{point="{POINT}",profile="lanzhou-basic-2023",region="{REGION}"}}' in text
    assert f'pointwatch_compliance_item_ok{{item="network.core",point="{POINT}"' in text
