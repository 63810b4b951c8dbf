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


def test_the_remembered_sheets_are_score_nows_own():
    """The keeper scores equal counted results once: whatever the times (results about to lapse or just
    lapsed, a point falling silent, two results of one key, a device given by kind), the profile and the
    level, its figures are those of score_now's sheet at that moment."""
    import random

    from collector.scoring import Observation, score_now
    from collector.scoring.scorekeeper import now_score
    from collector.scoring.scores import profile_for, profiles

    rnd = random.Random(21)
    checks = sorted(HEALTHY) + ["device.printer", "host.resources", "identity.enrolment", "collector.clock"]
    now = datetime(2026, 5, 1, 3, 0, tzinfo=timezone.utc)
    near = (0, 1, 179, 180, 181, 599, 600, 899, 900, 901, 3 * 3600 - 1, 3 * 3600, 3 * 3600 + 1, 7200)
    differed = 0
    for _ in range(1500):
        name = rnd.choice(sorted(profiles()))
        interval = rnd.choice((60, 300, 900))
        level = rnd.choice((None, "town", "village"))
        obs = []
        for check in rnd.sample(checks, rnd.randint(0, len(checks))):
            age = rnd.choice(near) if rnd.random() < 0.7 else rnd.uniform(0, 4 * 3600)
            status = rnd.choice(("ok", "ok", "ok", "warn", "fail", "error", "unknown"))
            if check.startswith("device.") and rnd.random() < 0.3:
                obs.append(Observation(now - timedelta(seconds=age), "device", "设备", status, check[7:]))
            else:
                obs.append(Observation(now - timedelta(seconds=age), check, "目标", status))
            if rnd.random() < 0.05:  # a second result of the same key
                obs.append(obs[-1]._replace(at=now - timedelta(seconds=rnd.choice(near)), status="fail"))
        rnd.shuffle(obs)
        silent_after = 3 * interval
        sheet = score_now(profile_for(name), obs, now=now, interval=interval, silent_after=silent_after,
                          level=level)
        want = (sheet.earned, sheet.automatic_points,
                {it.id: it.state == "met" for it in sheet.items if it.state in ("met", "not_met")})
        assert now_score(name, obs, now, interval, silent_after, level) == want, (name, level, interval, obs)
        differed += want[0] != sheet.total
    assert differed > 500  # most draws lose points somewhere: the comparison is not of full marks only


def test_one_read_gives_the_metric_rows_and_the_trusted_observations_the_two_reads_gave(store):
    """The score keeper's pass reads latest_results once (metriclines.lines_and_evidence): the same metric rows
    as metric_rows, and the same observations as latest_observations, whose rows of a collector check id
    are only the collector's own."""
    from agent.vocabulary import AGENT_POLICY
    from collector.store import metriclines
    from collector.store import models as m
    from collector.store.observations import latest_observations

    points.upsert_point(store, POINT, "东关村医保服务点", REGION, profile="lanzhou-basic-2023", report_interval_s=60)
    now = datetime.now(timezone.utc)
    ingest(store, [make_report(POINT, statuses=HEALTHY, collected_at=now)], received_at=now)
    with store.session() as s:  # a collector check id's row the collector did not write (say, an old import)
        s.add(m.LatestResult(point_code=POINT, check=AGENT_POLICY, target="伪造", status="ok", value=None,
                             unit="", message="", details={}, observed_at=now, received_at=now, since=now,
                             report_id="forged"))
    lines, evidence = metriclines.lines_and_evidence(store, [POINT])
    assert sorted(lines) == sorted(metriclines.metric_rows(store, codes=[POINT]))
    assert {c: sorted(rows) for c, rows in evidence.items()} == \
        {c: sorted(rows) for c, rows in latest_observations(store, codes=[POINT]).items()}
    assert len(lines) == len(evidence[POINT]) + 1 and "伪造" not in {r[2] for r in evidence[POINT]}
    assert any(r[1] == "net.core.icmp" for r in lines)
