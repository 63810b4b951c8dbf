"""`make demo`'s first start writes the fleet's last 7 days through the ingest path (collector/demo/history.py).

A small fleet of four demo points, one report an hour, against a temporary data directory: the history spans
the 7 days, every point's hash chain is intact (the store's own rows and an evidence bundle's verifier), the
7-day period scores are evaluable and tell the healthy point from the faulty ones, the alert history holds
the week's incidents, and a second start writes nothing.
"""

from __future__ import annotations

import random
import secrets
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from collector.app import create_app
from collector.demo import fleet, history
from collector.evidence import keys
from collector.evidence.bundle import export
from collector.evidence.chain import ChainWalk
from collector.evidence.period import Period
from collector.evidence.verify import verify_bundle
from collector.scoring.scores import point_sheet
from collector.settings import Settings
from collector.store import Store
from collector.store import models as m

DAYS, INTERVAL = 7, 3600
# Point index in the small fleet: (fault, period h, hours on, first start h); index 0 stays healthy.
SCHEDULE = {1: ("kiosk_offline", 24, 6, 2), 2: ("silent", 48, 10, 20), 3: ("remote_control", 72, 4, 30)}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def demo(request, tmp_path_factory):
    data = tmp_path_factory.mktemp("demo") / "data"
    data.mkdir()
    if request.param == "sqlite":
        store = Store.open(data)
    else:  # a schema of its own in the session's database, as conftest's db_url makes one per test
        import psycopg

        base = request.getfixturevalue("pg_database")
        schema = f"demo_history_{secrets.token_hex(4)}"
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        store = Store("postgresql+psycopg://" + base.split("://", 1)[1] + f"?options=-csearch_path%3D{schema}")
        store.upgrade()
    now = datetime.now(timezone.utc)
    sims = fleet.seed(store, data, INTERVAL, created_at=history.registered_from(now, DAYS, INTERVAL))[:4]
    # A notifier is configured (nothing listens there): the replay must queue nothing for it.
    settings = Settings(data_dir=data, extra={"alerts": {"notifiers": [
        {"name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/hook"}]}})
    app = create_app(settings, store)
    lines: list[str] = []
    written = history.first_start(app, sims, data, now=now, days=DAYS, interval_s=INTERVAL, schedule=SCHEDULE,
                                  progress=lambda text, **_: lines.append(text))
    yield store, data, app, sims, now, written, lines
    store.close()


def test_history_spans_the_days_through_the_ingest_path(demo):
    store, _, _, sims, now, written, lines = demo
    assert written is not None and written.interval_s == INTERVAL
    assert lines[0] == f"写入演示历史：第 1/{DAYS} 天…" and f"写入演示历史：第 {DAYS}/{DAYS} 天…" in lines
    assert "用时" in lines[-1]
    with store.session() as s:
        first, last, n = s.execute(select(func.min(m.Report.received_at), func.max(m.Report.received_at),
                                          func.count()).where(m.Report.point_code.in_([x.code for x in sims]))).one()
    first, last = (t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t for t in (first, last))
    assert abs(first - (now - timedelta(days=DAYS))) < timedelta(seconds=1)
    assert abs(last - now) < timedelta(seconds=1)
    assert n == written.reports
    # Every hour for 7 days, less the silent point's silent hours.
    assert 3 * (DAYS * 24 + 1) < n < 4 * (DAYS * 24 + 1)


def test_every_points_hash_chain_is_intact(demo):
    store, data, _, sims, now, _, _ = demo
    with store.session() as s:
        for sim in sims:
            walk = ChainWalk()
            rows = s.execute(select(m.Report.report_id, m.Report.prev_digest, m.Report.digest, m.Report.body)
                             .where(m.Report.point_code == sim.code).order_by(m.Report.id))
            for line, (rid, prev, digest, body) in enumerate(rows, start=1):
                walk.feed(line, rid, prev, digest, body)
            assert walk.intact and walk.tail == "" and walk.reports > 100, (sim.code, walk.summary())
    # And as a reviewer would see it: an evidence bundle of the week for a faulty point verifies.
    period = Period(now - timedelta(days=DAYS), now + timedelta(seconds=1), "", "")
    bundle = data.parent / "evidence.zip"
    key = keys.load_or_create(data)
    with open(bundle, "wb") as fh:
        export(store, key, fh, period, codes=[sims[1].code])
    verdict = verify_bundle(bundle, key.public_key())  # the collector's own key, as a reviewer would pass it
    assert verdict.ok, verdict.problems
    assert verdict.reports > 100


def test_week_scores_are_evaluable_and_tell_healthy_from_faulty(demo):
    store, _, _, sims, now, _, _ = demo
    start = now - timedelta(days=DAYS)
    sheets = {i: point_sheet(store, sims[i].code, start, now) for i in range(4)}
    for i, sheet in sheets.items():
        automatic = [it for it in sheet.items if it.mode == "auto"]
        assert automatic, i
        assert all(it.state != "no_data" for it in automatic), (i, [(it.id, it.state) for it in automatic])
    healthy = sheets[0].earned
    for i in (1, 2, 3):
        assert sheets[i].earned < healthy, (i, sheets[i].earned, healthy)
    states = {i: {it.id: it.state for it in sheets[i].items} for i in sheets}
    assert states[1] != states[0] and states[2] != states[0]


def test_alert_history_holds_the_weeks_incidents(demo):
    store, _, _, sims, now, written, _ = demo
    with store.session() as s:
        alerts = s.execute(select(m.Alert.point_code, m.Alert.rule, m.Alert.state, m.Alert.fired_at)
                           .where(m.Alert.point_code.in_([x.code for x in sims]))).all()
        queued = s.scalar(select(func.count()).select_from(m.Notification))
    assert written.alerts == len(alerts)
    resolved = {(code, rule) for code, rule, state, _ in alerts if state == "resolved"}
    assert (sims[1].code, "device_missing") in resolved
    assert (sims[2].code, "point_silent") in resolved
    assert (sims[3].code, "forbidden_software") in resolved
    # Fired at their own past times, days apart, and nobody was paged for last week.
    kiosk = sorted(f for code, rule, _, f in alerts if code == sims[1].code and rule == "device_missing")
    assert len(kiosk) >= DAYS - 1
    assert kiosk[-1] - kiosk[0] > timedelta(days=DAYS - 2)
    assert queued == 0


def test_a_second_start_writes_no_history(demo):
    store, data, _, sims, now, written, _ = demo
    with store.session() as s:
        before = s.scalar(select(func.count()).select_from(m.Report))
    app = create_app(Settings(data_dir=data), store)
    assert history.first_start(app, sims, data, days=DAYS, interval_s=INTERVAL, schedule=SCHEDULE,
                               progress=lambda *a, **k: None) is None
    # Without the marker too (a data directory from before the history, or an interrupted first start).
    history.marker_path(data).unlink()
    assert history.first_start(app, sims, data, days=DAYS, interval_s=INTERVAL, schedule=SCHEDULE,
                               progress=lambda *a, **k: None) is None
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(m.Report)) == before
    assert history.marker_path(data).exists()


def test_the_live_silent_point_keeps_to_the_history_hours():
    sims = [fleet.SimPoint(f"6201230010{i:02d}", "", "", random.Random(i)) for i in range(42)]
    start = datetime.now(timezone.utc) - timedelta(days=history.HISTORY_DAYS)
    history.live_scenario(start)(sims, 0)
    assert "silent" in sims[41].faults  # the demo opens on the silent stretch that began 4 hours ago
    history.live_scenario(start - timedelta(hours=10))(sims, 0)
    assert "silent" not in sims[41].faults


def test_the_demo_county_runs_on_a_county_policy_with_village_overrides(demo):
    from collector.policy import service

    store, _data, _app, sims, _now, _written, _lines = demo
    station, dongguan = (service.show_point(store, sims[i].code) for i in (0, 1))
    assert station.origin["core_network.timeout"] == fleet.COUNTY
    assert station.policy["usage"]["allowed_usb_serials"] == []
    assert dongguan.origin["usage.allowed_usb_serials"] == f"{fleet.COUNTY}/城关镇/东关村"
    assert dongguan.origin["core_network.tcp"] == fleet.COUNTY
    # the history's reports were checked against it: agent.policy ok, the digest each point was issued
    with store.session() as s:
        rows = s.execute(select(m.LatestResult.point_code, m.LatestResult.status, m.LatestResult.details)
                         .where(m.LatestResult.check == "agent.policy")).all()
    by_point = {code: (status, details["reported"]) for code, status, details in rows}
    assert by_point[sims[1].code] == ("ok", dongguan.digest)
    assert by_point[sims[0].code] == ("ok", station.digest) and station.digest != dongguan.digest
