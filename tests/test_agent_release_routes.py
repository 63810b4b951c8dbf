"""Agent releases over HTTP (issue 23): an agent gets the release its own point's policy names, resumably;
the helpers of the rollout's tests (tests/test_agent_release_rollout.py). A real app (create_app) on the real
store, SQLite and PostgreSQL."""

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
from collector.releases import service as releases
from collector.settings import Settings
from collector.store import enrolment, points
from collector.store import releases as rows
from collector.store.audit import Actor
from tests.helpers import current_digest, make_report

STAGE = "甘肃省/兰州市/城关区/某镇"
VILLAGES = {"620102001001": STAGE + "/一村", "620102001002": STAGE + "/二村", "620102001003": STAGE + "/三村"}
ELSEWHERE = "620103009009"  # another county, whose policy names no release
A1 = "620102001001"
VERSION, PLATFORM = "0.2.1", "linux-x86_64"
ACTOR = Actor("test")


def build(tmp_path, store, pause_failed_share=0.2, size=300_000, alerts=None, min_failed=None):
    private = tmp_path / "release.pem"
    key = mf.keygen(private)
    section = {"public_keys": [key["public_key"]], "pause_failed_share": pause_failed_share,
               **({"pause_min_failed_points": min_failed} if min_failed is not None else {})}
    settings = Settings(data_dir=tmp_path / "data", extra={"agent_releases": section,
                                                           **({"alerts": alerts} if alerts else {})})
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
    # a version its policy does not name, held or not: the same 403, so a token cannot learn what is held
    assert _refusal(client.get(url(version="0.9.9", file=file), headers=auth(tokens[A1]))) == (403, "not_in_policy")
    # the version its policy names, for a platform not held; not a version at all
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


def _chunks(store, where: str, **params) -> None:
    from sqlalchemy import text

    with store.engine.begin() as conn:
        conn.execute(text(where), params)


@pytest.mark.parametrize(("damage", "chunk", "problem"), [
    ("DELETE FROM agent_release_chunks WHERE idx = 2", 2, "chunk 2 of 3 missing"),
    ("UPDATE agent_release_chunks SET data = :short WHERE idx = 0", 0, "chunk 0 has 10 bytes, 1048576 expected"),
    ("INSERT INTO agent_release_chunks (sha256, idx, data, digest) SELECT sha256, 3, :short, digest "
     "FROM agent_release_chunks WHERE idx = 0", 3, "chunk 3 beyond the 3 of a 2500000-byte file"),
])
def test_a_chunk_table_that_does_not_add_up_is_an_error_naming_it(tmp_path, store, damage, chunk, problem, caplog):
    client, tokens, data, _ = build(tmp_path, store, size=2_500_000)
    _chunks(store, damage, short=b"x" * 10)
    for rng in (None, "bytes=0-", "bytes=2400000-"):  # whole, ranged, and a range the damage is not in
        r = client.get(url(file=True), headers={**auth(tokens[A1]), **({"Range": rng} if rng else {})})
        assert r.status_code == 500, (rng, r.status_code)
        detail = r.json()["detail"]
        assert detail["code"] == "release_file_damaged" and detail["chunk"] == chunk and detail["problem"] == problem
        assert f"第 {chunk} 块" in detail["message"]
    assert client.get(url(), headers=auth(tokens[A1])).status_code == 500
    assert f"release_file_damaged version={VERSION}" in caplog.text and problem in caplog.text


def test_chunks_that_do_not_hash_to_the_release_are_never_served(tmp_path, store):
    """Same sizes, other bytes: caught by the first use's reading through (the digest of each chunk is
    believed no more than the chunk is: both changed here)."""
    import hashlib

    client, tokens, data, _ = build(tmp_path, store, size=2_500_000)
    other = os.urandom(1_048_576)
    _chunks(store, "UPDATE agent_release_chunks SET data = :d, digest = :h WHERE idx = 1", d=other,
            h=hashlib.sha256(other).hexdigest())
    r = client.get(url(file=True), headers={**auth(tokens[A1]), "Range": "bytes=0-9"})
    assert r.status_code == 500 and r.json()["detail"]["chunk"] is None
    assert r.json()["detail"]["problem"].startswith("the chunks hash to ")


def test_a_chunk_changed_after_the_check_cuts_the_download_before_its_bytes(tmp_path, store, caplog):
    client, tokens, data, _ = build(tmp_path, store, size=2_500_000)
    assert client.get(url(file=True), headers=auth(tokens[A1])).content == data  # checked, and served
    _chunks(store, "UPDATE agent_release_chunks SET data = :d WHERE idx = 1", d=os.urandom(1_048_576))
    with pytest.raises(rows_damaged()), client.stream("GET", url(file=True), headers=auth(tokens[A1])) as r:
        got = b""
        for piece in r.iter_bytes():
            got += piece
    assert got == data[:1_048_576]  # the first chunk only: none of the changed one's bytes
    assert "release_chunk_damaged" in caplog.text and "chunk=1" in caplog.text
    # a ranged download that needs only the sound chunks is still served
    r = client.get(url(file=True), headers={**auth(tokens[A1]), "Range": "bytes=2097152-"})
    assert r.status_code == 206 and r.content == data[2097152:]


def rows_damaged():
    from collector.store.releasefiles import ChunksDamaged

    return ChunksDamaged


def test_the_same_file_added_again_repairs_its_chunks(tmp_path, store):
    client, tokens, data, settings = build(tmp_path, store, size=2_500_000)
    _chunks(store, "DELETE FROM agent_release_chunks WHERE idx = 1")
    assert client.get(url(file=True), headers=auth(tokens[A1])).status_code == 500
    added = releases.add(store, settings.data_dir, settings.agent_releases(), str(tmp_path / "pointwatch-agent"),
                         VERSION, PLATFORM, None, ACTOR)
    assert added.outcome == "unchanged"
    assert client.get(url(file=True), headers=auth(tokens[A1])).content == data


def test_the_enrolment_answer_carries_the_release_keys(world, store):
    client, _, _, settings = world
    code = enrolment.create_enroll_code(store, A1)
    r = client.post("/api/v1/enroll", json={"code": code, "point_code": A1, "hostname": "cun-pc",
                                            "fingerprint": {"machine_id": "m", "serial": "s", "macs": []}})
    assert r.status_code == 200, r.text
    assert r.json()["release_keys"] == settings.agent_releases().key_objects()
    assert r.json()["release_keys"][0]["key_id"] not in {k["key_id"] for k in r.json()["policy_keys"]}


# -- the rollout ---------------------------------------------------------------------------------------
def report(store, code: str, running: str = "0.1.0", upgrade: tuple[str, ...] | None = None) -> dict:
    """A report of ``code``'s agent at version ``running``; ``upgrade``: (status, target, reason[, sha256]) (no
    sha256: an agent from before builds were named)."""
    rep = make_report(point_code=code)
    rep.agent_version = running
    if upgrade is not None:
        status, target, reason, *build = upgrade
        rep.results.append(Result(check=AGENT_UPGRADE, target="本机代理", status=status, message="升级失败",
                                  details={"running": running, "target": target, "reason": reason, "state": "failed",
                                           **({"sha256": build[0]} if build else {})}))
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
