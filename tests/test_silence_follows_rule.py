"""One definition of 失联: the alert rule ``point_silent.intervals`` decides it for the pages, the points API,
/metrics, the "now" score and the alert itself. A point four intervals quiet is silent under the default
three and still up when the rule says five."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from collector.accounts import users
from collector.app import create_app
from collector.scoring.scores import point_sheet
from collector.settings import Settings
from collector.store import overview, points
from tests.helpers import POINT, REGION, make_report, stamp_policy

HEALTHY = {"isolation.internet": "ok", "isolation.interfaces": "ok", "identity.fingerprint": "ok",
           "usage.processes": "ok", "usage.removable_media": "ok", "usage.accounts": "ok",
           "usage.listening_ports": "ok", "net.core.tcp": "ok"}


def quiet_point(tmp_path, store, intervals: int | None):
    alerts = {"rules": {"point_silent": {"intervals": intervals}}} if intervals else {}
    app = create_app(Settings(data_dir=tmp_path / "data", extra={"alerts": alerts}), store=store)
    points.upsert_point(store, POINT, "某村医保服务点", REGION, profile="lanzhou-basic-2023", report_interval_s=60)
    four_minutes_ago = datetime.now(timezone.utc) - timedelta(minutes=4)
    reports = [make_report(POINT, statuses=HEALTHY, collected_at=four_minutes_ago)]
    stamp_policy(store, reports)  # checked against an issued policy: only such reports are evidence
    app.state.reports.receive(reports, received_at=four_minutes_ago)
    return app, store


@pytest.mark.parametrize("intervals, silent", [(None, True), (5, False)])
def test_every_view_calls_a_point_silent_by_the_rule(tmp_path, store, intervals, silent):
    app, store = quiet_point(tmp_path, store, intervals)
    assert app.state.silence_intervals == (intervals or 3)
    admin = {"Authorization": "Bearer " + users.create_token(store, "admin")}
    with TestClient(app) as client:
        api_state = client.get(f"/api/v1/points/{POINT}", headers=admin).json()["state"]
        metrics = client.get("/metrics").text
    assert (api_state == "silent") is silent
    [row] = overview.overview(store, overview.OverviewQuery()).rows
    assert (row.state == "silent") is silent
    up = next(line for line in metrics.splitlines() if line.startswith("pointwatch_point_up{") and POINT in line)
    assert float(up.rsplit(" ", 1)[1]) == (0 if silent else 1)
    sheet = point_sheet(store, POINT, silence_intervals=app.state.silence_intervals)
    assert (sheet.earned == 0) is silent


def test_a_period_not_yet_over_scores_only_what_was_knowable(tmp_path, store):
    """A point registered today, scored for today: the hours before it existed and the hours still to come
    are out of the denominator, so nothing is 'not met' for want of time that was not knowable."""
    app = create_app(Settings(data_dir=tmp_path / "data"), store=store)
    points.upsert_point(store, POINT, "某村医保服务点", REGION, profile="national-basic", report_interval_s=60)
    now = datetime.now(timezone.utc)
    reports = [make_report(POINT, statuses=HEALTHY, collected_at=now)]
    stamp_policy(store, reports)
    app.state.reports.receive(reports, received_at=now)
    admin = {"Authorization": "Bearer " + users.create_token(store, "admin")}
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    with TestClient(app) as client:
        sheet = client.get(f"/api/v1/scores/{POINT}", headers=admin,
                           params={"from": day.isoformat(), "to": (day + timedelta(days=1)).isoformat()}).json()
    asked = datetime.now(timezone.utc)
    assert sheet["slots"] == 1440 and sheet["knowable_slots"] <= 2  # registration .. now, at 60 s slots
    for item in sheet["items"]:
        assert item["last_failure"] is None or datetime.fromisoformat(item["last_failure"]) <= asked, item
        assert item["availability"] is None or item["state"] != "not_met" or sheet["knowable_slots"] > 0
