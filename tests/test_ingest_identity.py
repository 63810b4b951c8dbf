"""专机 (人机信息相符) is judged for the agent the token was issued to, never for the agent a report claims."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from agent.vocabulary import IDENTITY_MATCHES_ENROLMENT
from agent.wire import Fingerprint
from collector.accounts import users
from collector.app import create_app
from collector.settings import Settings
from collector.store import enrolment, points, queries
from tests.helpers import POINT, REGION, report_json

PINNED = {"machine_id": "m-1", "serial": "SN1", "macs": ["00:11:22:33:44:55"]}
OTHER_PC = Fingerprint("m-2", "SN2", ["66:77:88:99:aa:bb"])


@pytest.fixture
def enrolled(tmp_path, store):  # on SQLite and on PostgreSQL
    app = create_app(Settings(data_dir=tmp_path / "data"), store=store)
    points.upsert_point(store, POINT, "某村医保服务点", REGION)
    code = enrolment.create_enroll_code(store, POINT)
    agent_id, token = enrolment.enroll(store, code, POINT, "cun-pc", PINNED)
    with TestClient(app) as client:
        yield client, store, agent_id, {"Authorization": f"Bearer {token}"}


def identity_of(store):
    return {r.check: r for r in queries.latest_for_point(store, POINT)}.get(IDENTITY_MATCHES_ENROLMENT)


def test_report_claiming_another_agent_is_refused_and_nothing_stored(enrolled):
    client, store, agent_id, headers = enrolled
    body = report_json(agent_id=str(uuid.uuid4()), fingerprint=OTHER_PC)
    r = client.post("/api/v1/reports", json=body, headers=headers)
    assert r.status_code == 403 and "agent" in str(r.json()["detail"])
    assert queries.latest_for_point(store, POINT) == []


def test_the_tokens_own_agent_on_another_machine_fails_the_match(enrolled):
    client, store, agent_id, headers = enrolled
    r = client.post("/api/v1/reports", json=report_json(agent_id=agent_id, fingerprint=OTHER_PC), headers=headers)
    assert r.status_code == 202
    assert identity_of(store).status == "fail" and "疑似更换终端" in identity_of(store).message
    assert queries.point_summary(store, POINT).fingerprint_mismatch
    same = Fingerprint(PINNED["machine_id"], PINNED["serial"], PINNED["macs"])
    r = client.post("/api/v1/reports", json=report_json(agent_id=agent_id, seq=2, fingerprint=same), headers=headers)
    assert r.status_code == 202 and identity_of(store).status == "ok"


def test_a_token_of_no_enrolled_agent_earns_no_identity_match(enrolled):
    """A token made by hand for a point pins no machine: its reports cannot show 人机信息相符 at all, even
    when they claim the enrolled agent's id."""
    client, store, agent_id, _ = enrolled
    headers = {"Authorization": "Bearer " + users.create_token(store, "agent", point_code=POINT)}
    same = Fingerprint(PINNED["machine_id"], PINNED["serial"], PINNED["macs"])
    r = client.post("/api/v1/reports", json=report_json(agent_id=agent_id, fingerprint=same), headers=headers)
    assert r.status_code == 202
    assert identity_of(store) is None


@pytest.mark.parametrize("sent, missing", [
    (Fingerprint(PINNED["machine_id"], "", PINNED["macs"]), "主板/BIOS 序列号"),
    (Fingerprint("", "", []), "机器标识、主板/BIOS 序列号、网卡 MAC 地址"),
    (Fingerprint(PINNED["machine_id"], PINNED["serial"], []), "网卡 MAC 地址"),
])
def test_a_pinned_part_left_out_of_the_report_is_not_a_match(enrolled, sent, missing):
    """A replaced PC must not pass 人机信息相符 by reporting less: a part pinned at enrolment that the report
    leaves empty was not seen, so the match is an error (it earns nothing) naming the part, and the point's
    mismatch flag keeps what the last comparable report said."""
    client, store, agent_id, headers = enrolled
    r = client.post("/api/v1/reports", json=report_json(agent_id=agent_id, fingerprint=OTHER_PC), headers=headers)
    assert r.status_code == 202 and queries.point_summary(store, POINT).fingerprint_mismatch
    r = client.post("/api/v1/reports", json=report_json(agent_id=agent_id, seq=2, fingerprint=sent), headers=headers)
    assert r.status_code == 202
    row = identity_of(store)
    assert row.status == "error" and f"缺少注册时登记的{missing}" in row.message
    assert queries.point_summary(store, POINT).fingerprint_mismatch  # not cleared by a report that showed less


def test_an_enrolment_that_pinned_less_than_two_parts_never_matches(tmp_path, store):
    """An agent enrolled with an empty (or one-part) fingerprint would otherwise "match" whatever it sends:
    nothing pinned to compare is not 人机信息相符. Its reports say so and tell IT to enrol it again."""
    app = create_app(Settings(data_dir=tmp_path / "data"), store=store)
    points.upsert_point(store, POINT, "某村医保服务点", REGION)
    code = enrolment.create_enroll_code(store, POINT)
    agent_id, token = enrolment.enroll(store, code, POINT, "cun-pc", {"machine_id": "m-1", "serial": "", "macs": []})
    with TestClient(app) as client:
        r = client.post("/api/v1/reports", json=report_json(agent_id=agent_id, fingerprint=Fingerprint("m-1", "", [])),
                        headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 202
    row = identity_of(store)
    assert row.status == "error" and "注册时登记的终端标识不足两项（机器标识）" in row.message
