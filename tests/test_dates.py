"""One rule for dates in every API and CLI (collector/timeutil.py): a plain date is a Beijing day (as `to`,
included), an RFC 3339 time is taken as given, a time without its offset is refused."""

from __future__ import annotations

import json
import zipfile
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from agent.wire import Fingerprint
from collector.accounts import users
from collector.app import create_app
from collector.cli import main
from collector.settings import Settings
from collector.store import enrolment, points
from collector.timeutil import CHINA, parse_moment
from tests.helpers import POINT, REGION, ingest, make_report

UTC = timezone.utc
# Received around the edges of 2026-01-01 in Beijing (00:00 Beijing = 16:00 UTC the day before).
EDGES = {
    "before": datetime(2025, 12, 31, 15, 59, 59, tzinfo=UTC),  # 2025-12-31 23:59:59 Beijing
    "first": datetime(2025, 12, 31, 16, 0, 0, tzinfo=UTC),  # 2026-01-01 00:00:00 Beijing
    "midday": datetime(2026, 1, 1, 4, 0, 0, tzinfo=UTC),  # 2026-01-01 12:00:00 Beijing
    "last": datetime(2026, 1, 1, 15, 59, 59, tzinfo=UTC),  # 2026-01-01 23:59:59 Beijing
    "after": datetime(2026, 1, 1, 16, 0, 0, tzinfo=UTC),  # 2026-01-02 00:00:00 Beijing
}


def test_the_rule():
    assert parse_moment("2026-01-01") == datetime(2026, 1, 1, tzinfo=CHINA)
    assert parse_moment("2026-01-31", end_of_day=True) == datetime(2026, 2, 1, tzinfo=CHINA)
    assert parse_moment("2026-01-01T00:00:00Z") == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_moment("2026-01-01T00:00:00Z", end_of_day=True) == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_moment("2026-01-01T08:30:00+08:00") == datetime(2026, 1, 1, 0, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="no time zone"):
        parse_moment("2026-01-01T08:00:00")
    with pytest.raises(ValueError, match="not a date"):
        parse_moment("January")


@pytest.fixture
def app_store(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    app = create_app(settings)
    store = app.state.store
    points.upsert_point(store, POINT, "某村医保服务点", REGION, profile="lanzhou-basic-2023")
    enrolment.enroll(store, enrolment.create_enroll_code(store, POINT), POINT, "cun-pc",
                     {"machine_id": "m-1", "serial": "SN1", "macs": ["00:11:22:33:44:55"]})
    fp = Fingerprint("m-1", "SN1", ["00:11:22:33:44:55"])
    for seq, at in enumerate(EDGES.values(), start=1):
        ingest(store, [make_report(POINT, seq=seq, collected_at=at - timedelta(seconds=1), fingerprint=fp)],
               received_at=at)
    token = users.create_token(store, "admin")
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
        yield client, store, settings
    store.close()


def _received(client, **params) -> list[str]:
    r = client.get(f"/api/v1/points/{POINT}/reports", params=params)
    assert r.status_code == 200, r.text
    at = {datetime.fromisoformat(x["received_at"].replace("Z", "+00:00")) for x in r.json()["reports"]}
    return [name for name, t in EDGES.items() if t in at]


def test_api_plain_dates_are_beijing_days(app_store):
    client, _, _ = app_store
    assert _received(client, **{"from": "2026-01-01", "to": "2026-01-01"}) == ["first", "midday", "last"]
    r = client.get(f"/api/v1/points/{POINT}/reports", params={"from": "2026-01-01", "to": "2026-01-01"})
    body = r.json()
    assert (parse_moment(body["from"]), parse_moment(body["to"])) == (EDGES["first"], EDGES["after"])
    r = client.get(f"/api/v1/points/{POINT}/results", params={"from": "2026-01-01", "to": "2026-01-01"})
    assert r.status_code == 200 and r.json()["results"]


def test_api_rfc3339_times_as_given(app_store):
    client, _, _ = app_store
    # 00:00Z to 16:00Z (excluded) = 08:00 Beijing to midnight.
    assert _received(client, **{"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T16:00:00Z"}) == ["midday", "last"]
    assert _received(client, **{"from": "2025-12-31T23:59:59+08:00", "to": "2026-01-01T00:00:01+08:00"}) == \
        ["before", "first"]
    # the two forms mix
    assert _received(client, **{"from": "2026-01-01T12:00:00+08:00", "to": "2026-01-01"}) == ["midday", "last"]


def test_api_refuses_a_time_without_its_offset(app_store):
    client, _, _ = app_store
    r = client.get(f"/api/v1/points/{POINT}/reports", params={"from": "2026-01-01T08:00:00"})
    assert r.status_code == 422 and "'from'" in r.text and "no time zone" in r.text
    r = client.get("/api/v1/scores", params={"from": "yesterday", "to": "2026-01-01"})
    assert r.status_code == 422 and "not a date" in r.text


def test_scores_api_takes_both_forms(app_store):
    client, _, _ = app_store
    by_date = client.get(f"/api/v1/scores/{POINT}", params={"from": "2026-01-01", "to": "2026-01-01"})
    assert by_date.status_code == 200, by_date.text
    by_time = client.get(f"/api/v1/scores/{POINT}",
                         params={"from": "2025-12-31T16:00:00Z", "to": "2026-01-01T16:00:00Z"})
    assert by_time.status_code == 200, by_time.text
    assert by_date.json() == by_time.json()
    ranking = client.get("/api/v1/scores", params={"from": "2026-01-01", "to": "2026-01-01"})
    assert ranking.status_code == 200 and [r["code"] for r in ranking.json()["ranking"]] == [POINT]


def test_silence_ends_at_a_plain_date_is_the_end_of_that_beijing_day(app_store):
    client, _, _ = app_store
    day = (datetime.now(CHINA) + timedelta(days=2)).date()
    r = client.post("/api/v1/silences", json={"reason": "停电检修", "point": POINT, "ends_at": day.isoformat()})
    assert r.status_code == 201, r.text
    ends = datetime.fromisoformat(r.json()["ends_at"].replace("Z", "+00:00"))
    assert ends == datetime(day.year, day.month, day.day, tzinfo=CHINA) + timedelta(days=1)
    r = client.post("/api/v1/silences", json={"reason": "停电检修", "point": POINT,
                                              "ends_at": f"{day.isoformat()}T18:00:00"})
    assert r.status_code == 422 and "ends_at" in r.text and "no time zone" in r.text


def test_cli_takes_both_forms(app_store, tmp_path, capsys):
    _, _, settings = app_store
    data = ["--data-dir", str(settings.data_dir)]
    periods = {}
    for name, since, until in (("date", "2026-01-01", "2026-01-01"),
                               ("time", "2025-12-31T16:00:00Z", "2026-01-02T00:00:00+08:00")):
        out = tmp_path / f"{name}.zip"
        assert main([*data, "evidence", "export", "--point", POINT, "--from", since, "--to", until,
                     "--out", str(out)]) == 0
        with zipfile.ZipFile(out) as zf:
            manifest = json.loads(zf.read("manifest.json"))
        periods[name] = (manifest["period"]["from"], manifest["period"]["to"])
        assert manifest["points"][0]["chain"]["reports"] == 3  # first, midday, last
        capsys.readouterr()
        assert main([*data, "scores", "--from", since, "--to", until, "--json"]) == 0
        ranking = json.loads(capsys.readouterr().out)
        assert (parse_moment(ranking["from"]), parse_moment(ranking["to"])) == (EDGES["first"], EDGES["after"])
    assert periods["date"] == periods["time"] == ("2025-12-31T16:00:00Z", "2026-01-01T16:00:00Z")
    assert main([*data, "scores", "--from", "2026-01-01T08:00", "--to", "2026-01-01"]) == 2
    assert "no time zone" in capsys.readouterr().err
    assert main([*data, "evidence", "export", "--point", POINT, "--from", "2026-01-01T08:00", "--to",
                 "2026-01-01", "--out", str(tmp_path / "x.zip")]) == 2
    assert "--from" in capsys.readouterr().err
