"""The point's policy page: its effective policy, where each setting comes from, the digest its agent last
reported and when it fetched; confined to the reader's region like every point page."""

from __future__ import annotations

from fastapi.testclient import TestClient

from collector.accounts import users
from collector.api.agentpolicy import _answer
from collector.app import create_app
from collector.policy import service
from collector.settings import Settings
from collector.store import points
from collector.store.audit import Actor
from tests.helpers import ingest, make_report, web_login

COUNTY, OTHER = "甘肃省/兰州市/城关区", "甘肃省/兰州市/七里河区"


def test_the_page_shows_settings_with_their_levels_and_what_the_agent_ran(store, tmp_path):
    points.upsert_point(store, "P1", "甲村服务点", COUNTY + "/某镇/甲村")
    points.upsert_point(store, "P2", "七里河服务点", OTHER + "/某镇/乙村")
    service.set_region(store, COUNTY, "core_network: {timeout: 1s, tcp: [{target: '10.0.0.1:443'}]}\n", "c.yaml",
                       Actor("test"))
    service.set_region(store, COUNTY + "/某镇/甲村", "core_network: {timeout: 3s}\n", "v.yaml", Actor("test"))
    app = create_app(Settings(data_dir=tmp_path / "data"), store=store)
    status, _, _ = _answer(store, tmp_path / "data", "P1", None)  # the agent fetches
    assert status == 200
    digest = service.show_point(store, "P1").digest
    report = make_report("P1")
    report.policy_digest = digest
    ingest(store, [report], policy=False)
    users.create_user(store, "viewer", "long-enough-pw", "viewer", COUNTY, person="查看员")
    client = TestClient(app, follow_redirects=False)
    assert web_login(client, "viewer", "long-enough-pw").status_code == 303
    page = client.get("/points/P1/policy")
    assert page.status_code == 200, page.text
    text = page.text
    assert "core_network.timeout" in text and "3s" in text and COUNTY + "/某镇/甲村" in text
    assert "core_network.tcp" in text and f"<td>{COUNTY}</td>" in text
    assert digest in text and "尚未取过" not in text and "正常" in text
    assert client.get("/points/P2/policy").status_code == 404  # another county's point
    points.upsert_point(store, "P4", "无策略服务点", "甘肃省/天水市/某县")
    users.create_user(store, "root-viewer", "long-enough-pw", "viewer", "/", person="省查看员")
    client.cookies.clear()
    assert web_login(client, "root-viewer", "long-enough-pw").status_code == 303
    assert "尚无采集端下发的检查策略" in client.get("/points/P4/policy").text
    assert "检查策略" in client.get("/points/P1").text  # linked from the point's page
