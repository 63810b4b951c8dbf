"""The rollout of agent releases (issue 23): the view of who runs what and who failed, and the collector's
automatic pause, which holds one stage, needs several points failing for a build fault, and a replaced build
does not inherit. A real app (create_app) on the real store, SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import os

from agent.policy import Key
from collector.accounts import users
from collector.policy import service as policy_service
from collector.releases import manifest as mf
from collector.releases import rollout
from collector.releases import service as releases
from collector.store import audit, points
from collector.store import releases as rows
from tests.test_agent_release_routes import (
    A1,
    ACTOR,
    ELSEWHERE,
    PLATFORM,
    STAGE,
    VERSION,
    _refusal,
    auth,
    build,
    send,
    url,
    view,
)

MORE = {"620102001004": STAGE + "/四村", "620102001005": STAGE + "/五村"}  # STAGE: five points in all
STAGE2 = "甘肃省/兰州市/城关区/另一镇"
OTHERS = {"620102002001": STAGE2 + "/甲村", "620102002002": STAGE2 + "/乙村", "620102002003": STAGE2 + "/丙村"}
B2, B3, B4, B5 = "620102001002", "620102001003", "620102001004", "620102001005"
O1 = "620102002001"


def grow(store, tokens) -> None:
    """Two more villages in STAGE, and a second stage of three naming the same release."""
    for code, region in {**MORE, **OTHERS}.items():
        points.upsert_point(store, code, f"{code}服务点", region)
        tokens[code] = users.create_token(store, "agent", point_code=code)
    policy_service.set_region(store, STAGE2, f"agent: {{version: '{VERSION}', window: '00:00-24:00'}}\n",
                              "stage2.yaml", ACTOR)


def world(tmp_path, store, **kw):
    client, tokens, data, settings = build(tmp_path, store, size=5000, **kw)
    grow(store, tokens)
    return client, tokens, settings, rows.get(store, VERSION, PLATFORM).sha256


def fails(client, tokens, store, code, reason, build=None):
    send(client, tokens, store, code, upgrade=("fail", VERSION, reason, *([build] if build else [])))


def paused_alerts(client, tokens) -> list[dict]:
    alerts = client.get("/api/v1/alerts", headers=auth(tokens["admin"])).json()["alerts"]
    return [a for a in alerts if a["rule"] == "rollout_paused"]


def stage_of(release: dict, stage: str) -> dict:
    return next(s for s in release["stages"] if s["stage"] == stage)


def test_a_stage_pauses_by_itself_only_for_enough_build_faults(tmp_path, store):
    client, tokens, _, held = world(tmp_path, store)
    send(client, tokens, store, O1, running=VERSION)
    # Three of five fail, for reasons that are the PC's download, disk or key: never the build's fault.
    for code, reason in ((A1, "digest_mismatch"), (B2, "bad_signature"), (B3, "size_mismatch")):
        fails(client, tokens, store, code, reason, held)
    release = view(client, tokens["admin"])[VERSION]
    assert (release["failed"], release["running"], release["reasons"]) == (
        3, 1, {"digest_mismatch": 1, "bad_signature": 1, "size_mismatch": 1})
    assert {k: stage_of(release, STAGE)[k] for k in ("points", "failed", "build_faults", "paused_at")} == {
        "points": 5, "failed": 3, "build_faults": 0, "paused_at": None}
    # Two build faults: 40 % is over the share, but two points are fewer than the three required.
    fails(client, tokens, store, A1, "does_not_start", held)
    fails(client, tokens, store, B2, "rolled_back", held)
    assert view(client, tokens["admin"])[VERSION]["paused_stages"] == []
    assert client.get(url(file=True), headers=auth(tokens[A1])).status_code == 200

    fails(client, tokens, store, B3, "does_not_start", held)
    release = view(client, tokens["admin"])[VERSION]
    assert release["paused_stages"] == [STAGE] and release["paused_at"] is None  # the stage, not the version
    assert STAGE in stage_of(release, STAGE)["paused_reason"] and "3/5" in stage_of(release, STAGE)["paused_reason"]
    assert stage_of(release, STAGE2)["paused_at"] is None
    for code in (A1, B4):
        assert _refusal(client.get(url(file=True), headers=auth(tokens[code]))) == (409, "rollout_paused")
    for code in OTHERS:  # the other stage keeps getting the release
        assert client.get(url(), headers=auth(tokens[code])).status_code == 200
        assert client.get(url(file=True), headers=auth(tokens[code])).status_code == 200
    (alert,) = paused_alerts(client, tokens)
    assert alert["target"] == VERSION and alert["state"] == "firing" and alert["point"] == B3
    (entry,) = audit.audit_entries(store, action="agent_release.pause")
    assert entry["actor"] == "system" and entry["details"]["stage"] == STAGE and STAGE in entry["details"]["reason"]
    assert (entry["details"]["failed"], entry["details"]["points"], entry["details"]["min_failed_points"]) == (3, 5, 3)

    fails(client, tokens, store, B4, "rolled_back", held)  # a paused stage is not paused twice
    assert len(audit.audit_entries(store, action="agent_release.pause")) == 1

    assert releases.resume(store, VERSION, ACTOR, stage=STAGE2) == []  # nothing paused there
    assert releases.resume(store, VERSION, ACTOR, stage=STAGE) == [STAGE]
    assert client.get(url(file=True), headers=auth(tokens[A1])).status_code == 200
    assert paused_alerts(client, tokens) == []
    # The failures seen at the resume do not undo it (those agents never retry the same build) ...
    assert rollout.evaluate(store, [A1, B2, B3, B4], 0.2, 3) == []
    # ... not even when they report it again leaving the build out
    for code in (A1, B2, B3):
        fails(client, tokens, store, code, "does_not_start")
    assert view(client, tokens["admin"])[VERSION]["paused_stages"] == []
    assert rollout.evaluate(store, [A1, B2, B3], 0.2, 3) == []
    # ... new ones do, once there are enough again.
    fails(client, tokens, store, B5, "does_not_start", held)
    assert rollout.evaluate(store, [B5], 0.0, 1) == [(VERSION, STAGE)]


def test_one_pc_cannot_stop_a_rollout_not_even_its_own_point_stage(tmp_path, store):
    client, tokens, _, held = world(tmp_path, store)
    policy_service.set_point(store, A1, f"agent: {{version: '{VERSION}', window: '00:00-24:00'}}\n", "p.yaml", ACTOR)
    for reason in ("does_not_start", "rolled_back", "does_not_start"):
        fails(client, tokens, store, A1, reason, held)
    assert rollout.evaluate(store, [A1], 0.0, 3) == []
    release = view(client, tokens["admin"])[VERSION]
    assert release["paused_stages"] == [] and stage_of(release, f"point:{A1}")["build_faults"] == 1
    assert client.get(url(file=True), headers=auth(tokens[A1])).status_code == 200
    # One point in a stage of five, a 20 % share of zero: still the minimum of three stands.
    fails(client, tokens, store, B2, "does_not_start", held)
    assert rollout.evaluate(store, [B2], 0.0, 3) == []
    # Only a county that sets the minimum to 1 lets a single point pause: its own stage, nobody else's.
    assert rollout.evaluate(store, [A1], 0.0, 1) == [(VERSION, f"point:{A1}")]
    assert _refusal(client.get(url(), headers=auth(tokens[A1]))) == (409, "rollout_paused")
    assert client.get(url(), headers=auth(tokens[B2])).status_code == 200


def _rebuild(tmp_path, store, settings, name="pointwatch-agent-2", version=VERSION):
    data = tmp_path / name
    data.write_bytes(os.urandom(4000))
    (tmp_path / f"{name}.release.json").write_bytes(mf.sign(data, version, PLATFORM,
                                                            mf.load_private(tmp_path / "release.pem")))
    return releases.add(store, settings.data_dir, settings.agent_releases(), str(data), version, PLATFORM, None,
                        ACTOR, replace=True)


def test_a_replaced_build_inherits_neither_the_failures_nor_the_stage_pause(tmp_path, store):
    client, tokens, settings, old = world(tmp_path, store)
    for code in (A1, B2, B3):
        fails(client, tokens, store, code, "does_not_start", old)
    fails(client, tokens, store, B4, "rolled_back")  # an agent that does not name its build
    assert view(client, tokens["admin"])[VERSION]["paused_stages"] == [STAGE]

    added = _rebuild(tmp_path, store, settings)
    assert (added.outcome, added.stages_resumed, added.still_paused) == ("replaced", [STAGE], False)
    new = added.signed.sha256
    assert new != old and view(client, tokens["admin"])[VERSION]["paused_stages"] == []
    assert client.get(url(file=True), headers=auth(tokens[A1])).status_code == 200
    assert paused_alerts(client, tokens) == []
    (entry,) = audit.audit_entries(store, action="agent_release.replace")
    assert entry["details"]["stages_resumed"] == [STAGE] and entry["details"]["was"] == old
    assert entry["details"]["failed_builds"] == [[A1, old], [B2, old], [B3, old], [B4, ""]]

    # The old build's failures, repeated in every report, are not the new build's.
    for code in (A1, B2, B3):
        fails(client, tokens, store, code, "does_not_start", old)
    fails(client, tokens, store, B4, "rolled_back")
    assert rollout.evaluate(store, [A1, B2, B3, B4], 0.0, 1) == []
    assert stage_of(view(client, tokens["admin"])[VERSION], STAGE)["build_faults"] == 0
    # The new build failing on three points (A1 failed the old one too) pauses the stage again.
    for code in (A1, B2, B5):
        fails(client, tokens, store, code, "rolled_back", new)
    assert view(client, tokens["admin"])[VERSION]["paused_stages"] == [STAGE]


def test_a_replacement_keeps_an_admins_pause_and_says_so(tmp_path, store):
    client, tokens, settings, _ = world(tmp_path, store)
    assert releases.pause(store, VERSION, ACTOR)
    added = _rebuild(tmp_path, store, settings)
    assert added.still_paused and added.stages_resumed == []
    for code in (A1, O1):
        assert _refusal(client.get(url(), headers=auth(tokens[code]))) == (409, "rollout_paused")
    assert releases.resume(store, VERSION, ACTOR) == ["*"]
    assert client.get(url(), headers=auth(tokens[O1])).status_code == 200


def test_versions_are_one_text_however_written(tmp_path, store):
    client, tokens, settings, _ = world(tmp_path, store)
    # a policy writing 0.2.1 as 0.2.1.0 names the release 0.2.1
    policy_service.set_region(store, STAGE2, "agent: {version: '0.2.1.0', window: '00:00-24:00'}\n", "s2.yaml", ACTOR)
    assert client.get(url(), headers=auth(tokens[O1])).status_code == 200
    assert stage_of(view(client, tokens["admin"])[VERSION], STAGE2)["points"] == 3
    # a release added as "0.3" is held, signed and served as 0.3.0, asked for under either text
    added = _rebuild(tmp_path, store, settings, "agent-0.3", version="0.3")
    assert (added.outcome, added.signed.version) == ("added", "0.3.0")
    assert rows.get(store, "0.3", PLATFORM) is None and rows.get(store, "0.3.0", PLATFORM) is not None
    policy_service.set_region(store, STAGE2, "agent: {version: '0.3', window: '00:00-24:00'}\n", "s2.yaml", ACTOR)
    for text in ("0.3", "0.3.0"):
        assert client.get(url(version=text), headers=auth(tokens[O1])).status_code == 200
    assert _refusal(client.get(url(version="0.3"), headers=auth(tokens[A1]))) == (403, "not_in_policy")
    # an agent still reporting a failure under the policy's old text is counted under the canonical one
    send(client, tokens, store, O1, upgrade=("fail", "0.3", "does_not_start"))
    assert view(client, tokens["admin"])["0.3.0"]["failed_points"] == [O1] and "0.3" not in view(
        client, tokens["admin"])
    assert releases.pause(store, "0.3", ACTOR)  # what the admin types is the version held
    assert view(client, tokens["admin"])["0.3.0"]["paused_at"] is not None


def test_a_manifest_signed_under_another_text_of_the_version_is_the_same_version(tmp_path):
    key = mf.keygen(tmp_path / "k.pem")
    data = tmp_path / "f"
    data.write_bytes(b"x" * 10)
    raw = mf.sign(data, "0.4.0", PLATFORM, mf.load_private(tmp_path / "k.pem"))
    keys = [Key(key["key_id"], base64.b64decode(key["public_key"]))]
    assert mf.verify(raw, keys, "0.4", PLATFORM).version == "0.4.0"
    try:
        mf.verify(raw, keys, "0.4.1", PLATFORM)
    except mf.ReleaseRefused as exc:
        assert exc.reason == "wrong_version"
    else:
        raise AssertionError("0.4.1 accepted for a manifest of 0.4.0")


def test_the_admin_page_shows_the_rollout_and_a_stage_pause_in_chinese(tmp_path, store):
    client, tokens, _, held = world(tmp_path, store, pause_failed_share=0.5)
    fails(client, tokens, store, A1, "digest_mismatch", held)
    r = client.get("/admin/releases", headers=auth(tokens["admin"]))
    assert r.status_code == 200
    assert "代理升级" in r.text and VERSION in r.text and "文件摘要不符 1" in r.text and f"阶段 {STAGE}" in r.text
    assert "发布中" in r.text and "不少于 3 个" in r.text and "本阶段已暂停" not in r.text
    for code in (B2, B3, B4, B5):
        fails(client, tokens, store, code, "does_not_start", held)
    r = client.get("/admin/releases", headers=auth(tokens["admin"]))
    assert "本阶段已暂停" in r.text and "3/5" in r.text


def test_the_pause_alert_is_notified_like_any_other(tmp_path, store):
    from sqlalchemy import select

    from collector.store.models import Notification

    hook = {"notifiers": [{"name": "县群", "type": "webhook", "url": "http://127.0.0.1:9/hook"}]}
    client, tokens, _, held = world(tmp_path, store, alerts=hook, min_failed=1, pause_failed_share=0.1)
    fails(client, tokens, store, A1, "does_not_start", held)
    assert client.app.state.alerts.evaluate_point(A1) == 1  # what the alert worker does for the announced point
    with store.session() as s:
        (payload,) = s.scalars(select(Notification.payload)).all()
    assert payload["rule"] == "rollout_paused" and payload["target"] == VERSION and payload["event"] == "firing"
    assert "代理升级已自动暂停" in payload["subject"] and STAGE in payload["text"]
    assert client.app.state.alerts.evaluate_point(A1) == 0  # once


def test_a_viewer_of_another_county_sees_the_release_but_none_of_this_countys_points(tmp_path, store):
    client, tokens, _, held = world(tmp_path, store)
    fails(client, tokens, store, A1, "does_not_start", held)
    send(client, tokens, store, ELSEWHERE)
    other = view(client, tokens["outsider"])[VERSION]
    assert (other["running"], other["failed"], other["stages"], other["failed_points"]) == (0, 0, [], [])
    mine = view(client, tokens["viewer"])[VERSION]
    assert mine["failed_points"] == [A1]


def test_the_migration_holds_a_release_under_its_canonical_version(db_url):
    from sqlalchemy import text

    from collector.store import Store

    s = Store(db_url)
    try:
        s.upgrade("0008")
        with s.engine.begin() as conn:
            for version, platform in (("0.2", PLATFORM), ("0.3", PLATFORM), ("0.3.0", PLATFORM), ("0.4.1.0", "wheel")):
                conn.execute(text("INSERT INTO agent_releases (version, platform, file_name, size, sha256, manifest, "
                                  "added_at) VALUES (:v, :p, 'f', 1, :h, :m, :t)"),
                             {"v": version, "p": platform, "h": "ab" * 32, "m": b"{}", "t": "2026-01-01 00:00:00+00:00"})
        s.upgrade()
        held = sorted((r["version"], r["platform"]) for r in rows.list_releases(s))
        # 0.3 stays: 0.3.0 is held already, and neither row is lost
        assert held == [("0.2.0", PLATFORM), ("0.3", PLATFORM), ("0.3.0", PLATFORM), ("0.4.1", "wheel")]
    finally:
        s.close()
