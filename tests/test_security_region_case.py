"""Region confinement is exact on every store: ``Gansu/Lanzhou/ZoneA`` does not contain ``gansu/lanzhou/zonea``.

SQLite's LIKE ignores ASCII letter case, so a ``LIKE 'scope/%'`` filter let a principal on one region read
the points, alerts, scores, audit entries, pages, /metrics lines and signed evidence of another region whose
names differ only by case (issue 18, item 1). Region names here are Latin on purpose: Chinese has no case.
"""

from __future__ import annotations

import io
import zipfile
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from collector.accounts import users
from collector.app import create_app
from collector.metrics.render import FleetCollector
from collector.scoring.scorekeeper import rescore
from collector.settings import Settings
from collector.store import alerts, audit, metriclines, observations, points, pointscores, queries
from collector.store.models import Alert
from collector.store.overview import OverviewQuery, overview
from tests.helpers import ingest, make_report

UPPER, LOWER = "Gansu/Lanzhou/ZoneA", "gansu/lanzhou/zonea"
MINE, THEIRS = "620102001001", "620103009009"
SECRET = "SecretLowercasePoint"


@pytest.fixture
def twins(store, tmp_path):
    now = datetime.now(timezone.utc)
    for code, name, region in ((MINE, "MyPoint", UPPER + "/T1/V1"), (THEIRS, SECRET, LOWER + "/t1/v1")):
        points.upsert_point(store, code, name, region)
        ingest(store, [make_report(code, statuses={"net.core.tcp": "fail", "host.resources": "ok"},
                                   agent_id=f"00000000-0000-4000-8000-{code}")])
        with store.session() as s:
            s.add(Alert(fingerprint=code * 2, open_key=code, rule="device_missing", point_code=code,
                        region_path=region, check="net.core.tcp", target="gw", severity="warning", state="firing",
                        summary=f"alert of {name}", pending_since=now - timedelta(minutes=5), fired_at=now,
                        updated_at=now))
        audit.record(store, audit.Actor(f"tester-{code}"), "point.test", f"point:{code}", {"name": name}, region)
    rescore(store, [MINE, THEIRS])
    return store, tmp_path


def test_store_reads_are_case_exact(twins):
    store, _ = twins
    assert {p.code for p in queries.list_points(store, UPPER)} == {MINE}
    assert {p.code for p in queries.list_points(store, LOWER)} == {THEIRS}
    assert {a.point_code for a, _ in alerts.list_alerts(store, UPPER)} == {MINE}
    assert set(alerts.alerts_firing_counts(store, UPPER)) == {UPPER + "/T1/V1"}
    assert {e["target"] for e in audit.audit_entries(store, UPPER, 100, None, "point.test")} == {f"point:{MINE}"}
    assert {r[0] for r in pointscores.metrics_compliance(store, UPPER)} == {MINE}
    assert set(observations.latest_observations(store, UPPER)) == {MINE}
    assert {r[0] for r in metriclines.metrics_points(store, UPPER)} == {MINE}
    assert all(THEIRS not in line for fam in ("pointwatch_point_up", "pointwatch_check_status")
               for line in metriclines.stream_metric_lines(store, fam, UPPER))
    assert {r.code for r in overview(store, OverviewQuery(scope=UPPER)).rows} == {MINE}
    text = FleetCollector(store, UPPER).render().decode()
    assert MINE in text and THEIRS not in text and LOWER not in text


def test_http_confined_by_case(twins):
    store, tmp_path = twins
    client = TestClient(create_app(Settings(data_dir=tmp_path / "data"), store=store), follow_redirects=False)
    failures = []
    for role in ("viewer", "reviewer", "admin"):
        headers = {"Authorization": "Bearer " + users.create_token(store, role, UPPER, person=f"p-{role}")}
        urls = ["/api/v1/points", "/api/v1/alerts?state=all", "/api/v1/scores", "/", "/scores", "/alerts",
                f"/metrics?region={UPPER}"]
        if role == "admin":
            urls += ["/api/v1/audit", "/audit"]
        for url in urls:
            r = client.get(url, headers=headers)
            if r.status_code != 200:
                failures.append(f"{role} {url}: {r.status_code}")
            elif THEIRS in r.text or SECRET in r.text or LOWER in r.text:
                failures.append(f"{role} {url}: shows the other region")
            elif MINE not in r.text and url != "/api/v1/audit" and url != "/audit":
                failures.append(f"{role} {url}: does not show its own point")
        for url in (f"/api/v1/points/{THEIRS}", f"/points/{THEIRS}", f"/api/v1/scores/{THEIRS}"):
            if (code := client.get(url, headers=headers).status_code) != 404:
                failures.append(f"{role} {url}: {code}, expected 404")
        if role == "reviewer":
            today = datetime.now(timezone.utc).date().isoformat()
            r = client.get("/api/v1/evidence/region.zip", headers=headers,
                           params={"region": UPPER, "from": today, "to": today})
            assert r.status_code == 200, r.text
            with zipfile.ZipFile(io.BytesIO(r.content)) as z:
                content = b"".join(z.read(n) for n in z.namelist())
            if THEIRS.encode() in content or SECRET.encode() in content:
                failures.append("region.zip: carries the other region's point")
            r = client.get("/api/v1/evidence/region.zip", headers=headers,
                           params={"region": LOWER, "from": today, "to": today})
            if r.status_code != 404:
                failures.append(f"region.zip?region={LOWER}: {r.status_code}, expected 404")
    assert not failures, "\n".join(failures)


def test_names_holding_like_wildcards_are_matched_literally_and_the_root_holds_everything(store):
    """A region may be named with ``_`` or ``%`` (docs/en/operations.md, "Region paths"): beneath it means
    beneath that very name on both stores, and ``within`` the root ``/`` is every point."""
    from sqlalchemy import select

    from collector.store import models as m
    from collector.store.regionscope import within

    regions = {"620102001001": "Gansu/Lan_zhou/Z1/V1", "620102001002": "Gansu/Lanxzhou/Z1/V1",
               "620102001003": "Gansu/100%/Z1/V1", "620102001004": "Gansu/1000/Z1/V1"}
    for code, region in regions.items():
        points.upsert_point(store, code, "Point", region)
    with store.session() as s:
        def codes(scope):
            return set(s.scalars(select(m.Point.code).where(within(m.Point.region_path, scope))))

        assert codes("Gansu/Lan_zhou") == {"620102001001"}
        assert codes("Gansu/100%") == {"620102001003"}
        assert codes("/") == set(regions) and codes("Gansu") == set(regions)
