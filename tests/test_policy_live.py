"""The policy API on a real collector process: who may set and read policies, the signed agent endpoint
(enrolment pins the keys; ETag / If-None-Match; a change shows in the next fetch) and key rotation."""

from __future__ import annotations

import base64
import json
import random
import time
import uuid

import httpx
import pytest

from agent.wire import Fingerprint
from collector.demo import fleet
from tests.helpers import report_json
from tests.livecollector import start_collector
from tests.policyenvelope import Refused, accept, policy_digest

COUNTY_A, COUNTY_B = "甘肃省/兰州市/城关区", "甘肃省/兰州市/七里河区"
POINT_A, POINT_B = "620102001001", "620103001001"
COUNTY_POLICY = """\
intervals: {network: 60s}
core_network:
  timeout: 1s
  tcp: [{target: "10.10.1.20:443", name: 省医保信息平台}]
usage: {forbidden_software: default, allowed_ports: [22]}
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    work = tmp_path_factory.mktemp("policy-live")
    c = start_collector(work)
    try:
        c.cli("points", "add", "--code", POINT_A, "--name", "城关区甲村", "--region", COUNTY_A + "/某镇/甲村")
        c.cli("points", "add", "--code", POINT_B, "--name", "七里河区乙村", "--region", COUNTY_B + "/某镇/乙村")
        tokens = {"admin_a": c.cli("tokens", "create", "--role", "admin", "--region", COUNTY_A, "--person", "甲管理"),
                  "admin_b": c.cli("tokens", "create", "--role", "admin", "--region", COUNTY_B, "--person", "乙管理"),
                  "viewer_a": c.cli("tokens", "create", "--role", "viewer", "--region", COUNTY_A, "--person", "甲查看")}
        for name, point in (("agent_a", POINT_A), ("agent_b", POINT_B)):
            code = c.cli("enroll-code", "create", "--point", point)
            r = httpx.post(c.base + "/api/v1/enroll", json={"code": code, "point_code": point, "hostname": "pc",
                                                            "fingerprint": {"machine_id": "m-" + point}})
            assert r.status_code == 200, r.text
            tokens[name] = r.json()["token"]
            tokens[name + "_keys"] = r.json()["policy_keys"]
            tokens[name + "_id"] = r.json()["agent_id"]
        yield c, tokens
    finally:
        c.stop()


def h(token: str, **extra) -> dict:
    return {"Authorization": f"Bearer {token}", **extra}


def fetch(c, token, etag=None):
    return httpx.get(c.base + "/api/v1/agent/policy", headers=h(token, **({"If-None-Match": etag} if etag else {})))


def test_enrolment_pins_the_collectors_evidence_key(live):
    c, t = live
    keys = t["agent_a_keys"]
    assert len(keys) == 1 and keys[0]["algorithm"] == "Ed25519" and len(base64.b64decode(keys[0]["public_key"])) == 32
    pem = httpx.get(c.base + "/api/v1/evidence/public-key").text
    from cryptography.hazmat.primitives import serialization

    raw = serialization.load_pem_public_key(pem.encode()).public_bytes(serialization.Encoding.Raw,
                                                                       serialization.PublicFormat.Raw)
    assert base64.b64decode(keys[0]["public_key"]) == raw


def test_only_admins_of_the_region_write_and_readers_read_within_it(live):
    c, t = live
    url = f"{c.base}/api/v1/policies/regions/{COUNTY_A}"
    yaml_body = {"content": COUNTY_POLICY.encode(), "headers": {"Content-Type": "application/yaml"}}
    assert httpx.put(url, **yaml_body).status_code == 401  # no credentials
    assert httpx.put(url, headers=h(t["admin_b"], **yaml_body["headers"]), content=yaml_body["content"]).status_code == 403
    assert httpx.put(url, headers=h(t["viewer_a"], **yaml_body["headers"]), content=yaml_body["content"]).status_code == 403
    assert httpx.put(url, headers=h(t["agent_a"], **yaml_body["headers"]), content=yaml_body["content"]).status_code == 403
    r = httpx.put(url, headers=h(t["admin_a"], **yaml_body["headers"]), content=yaml_body["content"])
    assert r.status_code == 200, r.text
    doc = httpx.get(url, headers=h(t["viewer_a"])).json()["document"]
    assert doc["source"] == COUNTY_POLICY and doc["by"].startswith("token:")
    assert httpx.get(f"{c.base}/api/v1/policies/regions/{COUNTY_A}", headers=h(t["admin_b"])).status_code == 404
    eff = httpx.get(f"{c.base}/api/v1/policies/points/{POINT_A}", headers=h(t["viewer_a"])).json()
    assert eff["origin"]["core_network.timeout"] == COUNTY_A and eff["digest"] == policy_digest(eff["policy"])
    assert httpx.get(f"{c.base}/api/v1/policies/points/{POINT_A}", headers=h(t["admin_b"])).status_code == 404
    assert httpx.get(f"{c.base}/api/v1/policies/points/{POINT_A}", headers=h(t["agent_a"])).status_code == 403
    history = httpx.get(f"{c.base}/api/v1/policies/history", headers=h(t["admin_b"])).json()["changes"]
    assert history == []  # county B's admin sees none of county A's changes


@pytest.mark.parametrize("body, kind, field", [
    ("core_network: {tcp: [{target: '10.0.0.1:99999'}]}\n", "application/yaml", "core_network.tcp[0].target"),
    ('{"collector": {"url": "http://evil"}}', "application/json", "collector"),
    ('{"usage": {"allowed_ports": "22"', "application/json", ""),
    ("usage: {allowed_ports: [22]\n", "text/plain", ""),
])
def test_malformed_documents_are_refused_naming_the_field(live, body, kind, field):
    c, t = live
    before = httpx.get(f"{c.base}/api/v1/policies/history", headers=h(t["admin_a"])).json()["changes"]
    r = httpx.put(f"{c.base}/api/v1/policies/regions/{COUNTY_A}/某镇", headers=h(t["admin_a"], **{"Content-Type": kind}),
                  content=body.encode())
    assert r.status_code == 422, r.text
    assert r.json()["detail"]["field"] == field and r.json()["detail"]["code"] == "invalid_policy"
    assert httpx.get(f"{c.base}/api/v1/policies/history", headers=h(t["admin_a"])).json()["changes"] == before


def test_the_agent_gets_its_own_points_policy_signed_and_a_change_in_the_next_fetch(live):
    c, t = live
    r = fetch(c, t["agent_a"])
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    payload = accept(r.json(), t["agent_a_keys"], POINT_A)
    assert payload["format"] == 1 and payload["policy"]["core_network"]["timeout"] == "1s"
    assert r.headers["etag"] == f'"{payload["digest"]}"'
    assert set(payload["policy"]) <= {"intervals", "core_network", "isolation", "usage", "devices"}
    # unchanged: 304, no body
    again = fetch(c, t["agent_a"], r.headers["etag"])
    assert again.status_code == 304 and again.content == b""
    # county B's agent: no policy for its point, and nothing in the request can name another point
    other = httpx.get(c.base + "/api/v1/agent/policy", params={"point": POINT_A, "code": POINT_A},
                      headers=h(t["agent_b"]))
    assert other.status_code == 404 and other.json()["detail"]["code"] == "no_policy"
    assert fetch(c, "pw_" + "x" * 43).status_code == 401
    assert fetch(c, t["viewer_a"]).status_code == 403
    # a village override: the next fetch carries the new digest (the ETag changes)
    r2 = httpx.put(f"{c.base}/api/v1/policies/regions/{COUNTY_A}/某镇/甲村", headers=h(t["admin_a"]),
                   json={"core_network": {"timeout": "2s"}})
    assert r2.status_code == 200, r2.text
    changed = fetch(c, t["agent_a"], r.headers["etag"])
    assert changed.status_code == 200 and changed.headers["etag"] != r.headers["etag"]
    new = accept(changed.json(), t["agent_a_keys"], POINT_A)
    assert new["policy"]["core_network"]["timeout"] == "2s"
    assert new["policy"]["core_network"]["tcp"] == payload["policy"]["core_network"]["tcp"]
    view = httpx.get(f"{c.base}/api/v1/policies/points/{POINT_A}", headers=h(t["viewer_a"])).json()
    assert view["digest"] == new["digest"] and view["last_fetched_at"] is not None


def _report(t, seq: int, digest: str | None) -> dict:
    body = report_json(point_code=POINT_A, seq=seq, agent_id=t["agent_a_id"],
                       fingerprint=Fingerprint("m-" + POINT_A, "", []))
    if digest is not None:
        body["policy_digest"] = digest
    return body


def _latest_policy_result(c, t) -> dict:
    results = httpx.get(f"{c.base}/api/v1/points/{POINT_A}", headers=h(t["viewer_a"])).json()["results"]
    return next(r for r in results if r["check"] == "agent.policy")


def test_reports_are_judged_by_the_policy_they_name_and_a_forged_digest_alerts(live):
    c, t = live
    digest = accept(fetch(c, t["agent_a"]).json(), t["agent_a_keys"], POINT_A)["digest"]
    post = lambda body: httpx.post(c.base + "/api/v1/reports", json=body, headers=h(t["agent_a"]))  # noqa: E731
    assert post(_report(t, 1, digest)).status_code == 202
    ok = _latest_policy_result(c, t)
    assert ok["status"] == "ok" and ok["details"]["reported"] == digest
    assert post(_report(t, 2, None)).status_code == 202
    assert _latest_policy_result(c, t)["status"] == "error"
    bad = post({**_report(t, 3, None), "policy_digest": "sha256:XYZ"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "policy_digest"
    forged = "sha256:" + "0" * 64
    assert post(_report(t, 4, forged)).status_code == 202
    failed = _latest_policy_result(c, t)
    assert failed["status"] == "fail" and failed["details"]["reported"] == forged
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        alerts = httpx.get(f"{c.base}/api/v1/alerts", headers=h(t["viewer_a"])).json()["alerts"]
        firing = [a for a in alerts if a["rule"] == "policy_mismatch" and a["point"] == POINT_A]
        if firing:
            break
        time.sleep(0.2)
    assert firing and firing[0]["state"] == "firing" and firing[0]["check"] == "agent.policy"
    # the stored report keeps the digest it was checked against, inside the hash-chained body
    reports = httpx.get(f"{c.base}/api/v1/points/{POINT_A}/reports", headers=h(t["viewer_a"])).json()["reports"]
    assert len(reports) == 3


def test_the_demo_fleets_simulated_agents_fetch_their_digest(live):
    c, t = live
    sim = fleet.SimPoint(POINT_A, "甲村", COUNTY_A, random.Random(0), token=t["agent_a"])
    fleet.fetch_policy(c.base, sim)
    current = httpx.get(f"{c.base}/api/v1/policies/points/{POINT_A}", headers=h(t["viewer_a"])).json()["digest"]
    assert sim.policy_digest == current and sim.policy_etag == f'"{current}"'
    fleet.fetch_policy(c.base, sim)  # 304: kept
    assert sim.policy_digest == current
    assert fleet._report(sim)["policy_digest"] == current


def test_a_tampered_or_foreign_envelope_is_what_an_agent_refuses(live):
    c, t = live
    env = fetch(c, t["agent_a"]).json()
    payload = json.loads(base64.b64decode(env["payload"]))
    payload["policy"]["usage"]["forbidden_software"] = "none"
    forged = {**env, "payload": base64.b64encode(json.dumps(payload).encode()).decode()}
    with pytest.raises(Refused, match="bad signature"):
        accept(forged, t["agent_a_keys"], POINT_A)
    with pytest.raises(Refused, match="other point"):
        accept(env, t["agent_a_keys"], POINT_B)
    with pytest.raises(Refused, match="bad signature"):
        accept({**env, "signatures": []}, t["agent_a_keys"], POINT_A)


def test_key_rotation_announces_the_next_key_signed_by_the_current_one(live):
    c, t = live
    first = fetch(c, t["agent_a"])
    etag = first.headers["etag"]
    c.cli("policy", "keys", "next")
    nxt = c.data_dir / "evidence-signing-key.next.pem"
    assert nxt.stat().st_mode & 0o777 == 0o600 and not list(c.data_dir.glob("*.tmp"))
    # the digest is unchanged, but the payload now announces a key: answered in full, not 304
    announced = fetch(c, t["agent_a"], etag)
    assert announced.status_code == 200
    payload = accept(announced.json(), t["agent_a_keys"], POINT_A)  # still signed by the pinned key
    (next_key,) = payload["announce_keys"]
    assert next_key["key_id"] != t["agent_a_keys"][0]["key_id"]
    # point B's agent has a policy now and has not fetched since: the switch waits for it
    httpx.put(f"{c.base}/api/v1/policies/regions/{COUNTY_B}", headers=h(t["admin_b"]),
              json={"intervals": {"network": "60s"}})
    import subprocess

    with pytest.raises(subprocess.CalledProcessError) as refused:
        c.cli("policy", "keys", "switch")
    assert "1 points" in refused.value.stderr and POINT_B in refused.value.stderr
    fetch(c, t["agent_b"])
    c.cli("policy", "keys", "switch")
    after = fetch(c, t["agent_a"])
    with pytest.raises(Refused):
        accept(after.json(), t["agent_a_keys"], POINT_A)  # an agent that never pinned the next key
    pinned = t["agent_a_keys"] + [next_key]
    assert accept(after.json(), pinned, POINT_A)["digest"] == payload["digest"]
    assert "announce_keys" not in accept(after.json(), pinned, POINT_A)
    assert fetch(c, t["agent_a"], after.headers["etag"]).status_code == 304
    code = c.cli("enroll-code", "create", "--point", POINT_B)
    r = httpx.post(c.base + "/api/v1/enroll", json={"code": code, "point_code": POINT_B, "hostname": "pc2",
                                                    "fingerprint": {"machine_id": str(uuid.uuid4())}})
    assert [k["key_id"] for k in r.json()["policy_keys"]] == [next_key["key_id"]]
