"""Agent releases over HTTP (issue 23): an agent gets the release its own point's policy names, resumably;
the rollout view counts who runs what and who failed, and pauses a release whose stage fails too often.
A real app (create_app) on the real store, SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import os

import pytest
from fastapi.testclient import TestClient

from agent.vocabulary import AGENT_UPGRADE
from agent.wire import Result, report_to_dict
from collector.accounts import users
from collector.app import create_app
from collector.policy import service as policy_service
from collector.releases import manifest as mf
from collector.releases import rollout
from collector.releases import service as releases
from collector.settings import Settings
from collector.store import audit, enrolment, points
from collector.store import releases as rows
from collector.store.audit import Actor
from tests.helpers import current_digest, make_report

STAGE = "甘肃省/兰州市/城关区/某镇"
VILLAGES = {"620102001001": STAGE + "/一村", "620102001002": STAGE + "/二村", "620102001003": STAGE + "/三村"}
ELSEWHERE = "620103009009"  # another county, whose policy names no release
A1 = "620102001001"
VERSION, PLATFORM = "0.2.1", "linux-x86_64"
ACTOR = Actor("test")


def build(tmp_path, store, pause_failed_share=0.2, size=300_000, alerts=None):
    private = tmp_path / "release.pem"
    key = mf.keygen(private)
    settings = Settings(data_dir=tmp_path / "data", extra={"agent_releases": {
        "public_keys": [key["public_key"]], "pause_failed_share": pause_failed_share}, **({"alerts": alerts} if alerts else {})})
    for code, region in VILLAGES.items():
        points.upsert_point(store, code, f"{code}服务点", region)
    points.upsert_point(store, ELSEWHERE, "七里河区服务点", "甘肃省/兰州市/七里河区/某镇/某村")
    policy_service.set_region(store, STAGE, f"agent: {{version: '{VERSION}', window: '00:00-24:00'}}\n", "stage.yaml",
                              ACTOR)
    policy_service.set_region(store, "甘肃省/兰州市/七里河区", "intervals: {network: 60s}\n", "other.yaml", ACTOR)
    release_file = tmp_path / "pointwatch-agent"
    release_file.write_bytes(os.urandom(size))
    (tmp_path / "pointwatch-agent.release.json").write_bytes(mf.sign(release_file, VERSION, PLATFORM, mf.load_private(private)))
    releases.add(store, settings.data_dir, settings.agent_releases(), str(release_file), VERSION, PLATFORM, None, ACTOR)
    app = create_app(settings, store=store)
    tokens = {code: users.create_token(store, "agent", point_code=code) for code in [*VILLAGES, ELSEWHERE]}
    tokens["admin"] = users.create_token(store, "admin", "/")
    tokens["viewer"] = users.create_token(store, "viewer", "甘肃省/兰州市/城关区")
    tokens["outsider"] = users.create_token(store, "viewer", "甘肃省/兰州市/七里河区")
    return TestClient(app), tokens, release_file.read_bytes(), settings


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def world(tmp_path, store):
    return build(tmp_path, store)


def url(version=VERSION, platform=PLATFORM, file=False) -> str:
    return f"/api/v1/agent/releases/{version}/{platform}" + ("/file" if file else "")


def test_the_agent_gets_the_manifest_as_signed_and_the_file(world, store):
    client, tokens, data, _ = world
    r = client.get(url(), headers=auth(tokens[A1]))
    assert r.status_code == 200
    assert r.content == rows.get(store, VERSION, PLATFORM).manifest
    payload = json.loads(base64.b64decode(r.json()["payload"]))
    assert payload["version"] == VERSION and payload["size"] == len(data)
    r = client.get(url(file=True), headers=auth(tokens[A1]))
    assert r.status_code == 200 and r.content == data
    assert r.headers["accept-ranges"] == "bytes" and int(r.headers["content-length"]) == len(data)


def test_a_download_resumes_from_a_byte_range(world):
    client, tokens, data, _ = world
    r = client.get(url(file=True), headers={**auth(tokens[A1]), "Range": "bytes=123457-"})
    assert r.status_code == 206
    assert r.content == data[123457:]
    assert r.headers["content-range"] == f"bytes 123457-{len(data) - 1}/{len(data)}"
    r = client.get(url(file=True), headers={**auth(tokens[A1]), "Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == data[10:20]
    for bad in (f"bytes={len(data)}-", "bytes=-500", "bytes=5-1", "items=0-", "bytes=0-1,5-9"):
        r = client.get(url(file=True), headers={**auth(tokens[A1]), "Range": bad})
        assert r.status_code == 416, bad
        assert r.headers["content-range"] == f"bytes */{len(data)}"


def _refusal(r) -> tuple[int, str]:
    return r.status_code, r.json()["detail"]["code"]


@pytest.mark.parametrize("file", [False, True])
def test_refusals_name_why(world, store, file):
    client, tokens, _, _ = world
    # a point whose policy does not name the version, whatever another point's policy says
    assert _refusal(client.get(url(file=file), headers=auth(tokens[ELSEWHERE]))) == (403, "not_in_policy")
    # no such release, no such platform, not a version at all
    assert _refusal(client.get(url(version="0.9.9", file=file), headers=auth(tokens[A1]))) == (404, "no_release")
    assert _refusal(client.get(url(platform="windows-amd64", file=file), headers=auth(tokens[A1]))) == (404, "no_release")
    assert _refusal(client.get(url(version="latest", file=file), headers=auth(tokens[A1]))) == (404, "no_release")
    releases.pause(store, VERSION, ACTOR)
    assert _refusal(client.get(url(file=file), headers=auth(tokens[A1]))) == (409, "rollout_paused")
    releases.resume(store, VERSION, ACTOR)
    assert client.get(url(file=file), headers=auth(tokens[A1])).status_code == 200


def test_a_point_level_policy_naming_another_version_wins_over_the_stage(world, store):
    client, tokens, _, _ = world
    policy_service.set_point(store, A1, "agent: {version: '0.3.0', window: '02:00-05:00'}\n", "p.yaml", ACTOR)
    assert _refusal(client.get(url(), headers=auth(tokens[A1]))) == (403, "not_in_policy")
    assert client.get(url(), headers=auth(tokens["620102001002"])).status_code == 200


def test_only_agent_tokens_download(world):
    client, tokens, _, _ = world
    for who in ("admin", "viewer"):
        assert client.get(url(file=True), headers=auth(tokens[who])).status_code == 403
    assert client.get(url(file=True)).status_code == 401


def test_a_stored_file_that_is_gone_is_no_release(world, store):
    client, tokens, _, settings = world
    rows.file_path(settings.data_dir, rows.get(store, VERSION, PLATFORM).sha256).unlink()
    assert _refusal(client.get(url(file=True), headers=auth(tokens[A1]))) == (404, "no_release")


def test_the_enrolment_answer_carries_the_release_keys(world, store):
    client, _, _, settings = world
    code = enrolment.create_enroll_code(store, A1)
    r = client.post("/api/v1/enroll", json={"code": code, "point_code": A1, "hostname": "cun-pc",
                                            "fingerprint": {"machine_id": "m", "serial": "s", "macs": []}})
    assert r.status_code == 200, r.text
    assert r.json()["release_keys"] == settings.agent_releases().key_objects()
    assert r.json()["release_keys"][0]["key_id"] not in {k["key_id"] for k in r.json()["policy_keys"]}


# -- the rollout ---------------------------------------------------------------------------------------
def report(store, code: str, running: str = "0.1.0", upgrade: tuple[str, str, str] | None = None) -> dict:
    """A report of ``code``'s agent at version ``running``; ``upgrade``: (status, target, reason)."""
    rep = make_report(point_code=code)
    rep.agent_version = running
    if upgrade is not None:
        status, target, reason = upgrade
        rep.results.append(Result(check=AGENT_UPGRADE, target="本机代理", status=status, message="升级失败",
                                  details={"running": running, "target": target, "reason": reason, "state": "failed"}))
    body = report_to_dict(rep)
    body["policy_digest"] = current_digest(store, code)
    return body


def send(client, tokens, store, code, **kw) -> None:
    r = client.post("/api/v1/reports", json={"reports": [report(store, code, **kw)]}, headers=auth(tokens[code]))
    assert r.status_code == 202, r.text


def view(client, token) -> dict:
    r = client.get("/api/v1/agent-releases", headers=auth(token))
    assert r.status_code == 200, r.text
    return {x["version"]: x for x in r.json()["releases"]}


def test_rollout_counts_and_an_automatic_pause_with_an_alert(tmp_path, store):
    client, tokens, _, _ = build(tmp_path, store, pause_failed_share=0.5, size=5000)
    send(client, tokens, store, "620102001001", running="0.2.1")
    send(client, tokens, store, "620102001002", upgrade=("fail", VERSION, "digest_mismatch"))
    send(client, tokens, store, ELSEWHERE)
    seen = view(client, tokens["admin"])
    assert seen["0.1.0"]["running"] == 2 and not seen["0.1.0"]["held"]
    release = seen[VERSION]
    assert (release["running"], release["failed"], release["reasons"]) == (1, 1, {"digest_mismatch": 1})
    assert release["failed_points"] == ["620102001002"]
    assert release["stages"] == [{"stage": STAGE, "points": 3, "failed": 1, "share": 0.3333}]
    assert release["paused_at"] is None  # 1 of 3 is not more than half
    assert client.get(url(), headers=auth(tokens[A1])).status_code == 200

    # a viewer of the other county sees the release, but none of this county's points
    other = view(client, tokens["outsider"])[VERSION]
    assert (other["running"], other["failed"], other["stages"], other["failed_points"]) == (0, 0, [], [])

    send(client, tokens, store, "620102001003", upgrade=("fail", VERSION, "rolled_back"))
    release = view(client, tokens["viewer"])[VERSION]
    assert release["failed"] == 2 and release["reasons"] == {"digest_mismatch": 1, "rolled_back": 1}
    assert release["paused_at"] is not None and STAGE in release["paused_reason"] and "2/3" in release["paused_reason"]
    assert _refusal(client.get(url(file=True), headers=auth(tokens[A1]))) == (409, "rollout_paused")

    alerts = client.get("/api/v1/alerts", headers=auth(tokens["admin"])).json()["alerts"]
    paused = [a for a in alerts if a["rule"] == "rollout_paused"]
    assert len(paused) == 1 and paused[0]["target"] == VERSION and paused[0]["state"] == "firing"
    assert paused[0]["point"] == "620102001003" and paused[0]["title"]
    entries = audit.audit_entries(store, action="agent_release.pause")
    assert len(entries) == 1 and entries[0]["actor"] == "system" and entries[0]["details"]["stage"] == STAGE
    assert (entries[0]["details"]["failed"], entries[0]["details"]["points"]) == (2, 3)

    # another failure of a paused release pauses nothing twice
    send(client, tokens, store, "620102001002", upgrade=("fail", VERSION, "does_not_start"))
    assert len(audit.audit_entries(store, action="agent_release.pause")) == 1

    metrics = client.get("/metrics").text
    assert 'pointwatch_agent_version_points{version="0.1.0"} 3' in metrics
    assert 'pointwatch_agent_version_points{version="0.2.1"} 1' in metrics

    releases.resume(store, VERSION, ACTOR)
    assert client.get(url(), headers=auth(tokens[A1])).status_code == 200
    alerts = client.get("/api/v1/alerts", headers=auth(tokens["admin"])).json()["alerts"]
    assert not [a for a in alerts if a["rule"] == "rollout_paused"]

    # The failures seen at the resume do not undo it: those agents repeat them in every report (and never
    # retry the same build), here judged afresh as another collector would.
    assert audit.audit_entries(store, action="agent_release.resume")[0]["details"]["failed_points"] == [
        "620102001002", "620102001003"]
    send(client, tokens, store, "620102001002", upgrade=("fail", VERSION, "does_not_start"))
    assert rollout.evaluate(store, ["620102001002", "620102001003"], 0.2) == []
    assert view(client, tokens["admin"])[VERSION]["paused_at"] is None
    # a new failure after the resume counts, on its own: 1 of 3
    send(client, tokens, store, A1, running="0.2.1", upgrade=("fail", VERSION, "rolled_back"))
    assert view(client, tokens["admin"])[VERSION]["paused_at"] is None  # 1/3 is not more than half
    assert rollout.evaluate(store, [A1], 0.2) == [VERSION]
    assert "1/3" in view(client, tokens["admin"])[VERSION]["paused_reason"]


def test_one_failure_in_a_small_stage_pauses_at_the_default_share(world, store):
    client, tokens, _, _ = world
    send(client, tokens, store, A1, upgrade=("fail", VERSION, "bad_signature"))
    assert view(client, tokens["admin"])[VERSION]["paused_at"] is not None  # 1/3 > 20 %


def test_a_failure_for_a_version_the_policy_no_longer_names_pauses_nothing(world, store):
    client, tokens, _, _ = world
    policy_service.set_region(store, STAGE, "agent: {version: '0.2.0', window: '00:00-24:00'}\n", "s.yaml", ACTOR)
    send(client, tokens, store, A1, upgrade=("fail", VERSION, "bad_signature"))
    assert view(client, tokens["admin"])[VERSION]["paused_at"] is None


def test_a_warn_or_ok_upgrade_result_is_no_failure(world, store):
    client, tokens, _, _ = world
    send(client, tokens, store, A1, upgrade=("warn", VERSION, "downloading"))
    send(client, tokens, store, "620102001002", upgrade=("ok", VERSION, ""))
    release = view(client, tokens["admin"])[VERSION]
    assert (release["failed"], release["paused_at"]) == (0, None)


def test_the_admin_page_shows_the_rollout_in_chinese(tmp_path, store):
    client, tokens, _, _ = build(tmp_path, store, pause_failed_share=0.9, size=100)
    send(client, tokens, store, A1, upgrade=("fail", VERSION, "digest_mismatch"))
    r = client.get("/admin/releases", headers=auth(tokens["admin"]))
    assert r.status_code == 200
    assert "代理升级" in r.text and VERSION in r.text and "文件摘要不符 1" in r.text and f"阶段 {STAGE}" in r.text
    assert "发布中" in r.text


def test_the_pause_alert_is_notified_like_any_other(tmp_path, store):
    from sqlalchemy import select

    from collector.store.models import Notification

    hook = {"notifiers": [{"name": "县群", "type": "webhook", "url": "http://127.0.0.1:9/hook"}]}
    client, tokens, _, _ = build(tmp_path, store, size=100, alerts=hook)
    send(client, tokens, store, A1, upgrade=("fail", VERSION, "does_not_start"))
    assert client.app.state.alerts.evaluate_point(A1) == 1  # what the alert worker does for the announced point
    with store.session() as s:
        (payload,) = s.scalars(select(Notification.payload)).all()
    assert payload["rule"] == "rollout_paused" and payload["target"] == VERSION and payload["event"] == "firing"
    assert "代理升级已自动暂停" in payload["subject"] and STAGE in payload["text"]
    assert client.app.state.alerts.evaluate_point(A1) == 0  # once
