"""The collector's /metrics text, the agent's own /metrics endpoint, and the dashboards/rules files."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from agent import config as agent_config
from agent.confignode import ConfigError
from agent.metrics_endpoint import MetricsEndpoint, supplies_of
from agent.wire import Fingerprint, Host, Report, Result
from collector.metrics.render import FAMILIES, FleetCollector, point_lines
from collector.scoring.scorekeeper import rescore
from collector.store import Store, metriclines, points, pointscores
from tests.conftest import REPO, free_port
from tests.helpers import ingest

SUPPLIES = [{"index": "1.1", "type": "toner", "description": "黑色\"墨粉\"", "ratio": 0.42},
            {"index": "1.2", "type": "opc", "description": "硒鼓", "state": "unknown"},
            {"index": "1.3", "type": "bad type!", "ratio": 0.5}]


def _report(code: str, results: list[Result]) -> Report:
    now = datetime.now(timezone.utc)
    return Report(str(uuid.uuid4()), 1, "agent-" + code, code, "0.1.0", now, now,
                  Host("pc", "Linux", None, Fingerprint("m", "s", [])), results)


@pytest.fixture
def store(db_url):
    """The rendering inputs, on SQLite and on PostgreSQL (conftest's db_url)."""
    s = Store(db_url)
    s.upgrade()
    points.upsert_point(s, "P1", "一号点", "甘肃省/兰州市/城关区/甲镇/甲村")
    points.upsert_point(s, "P2", "二号点", "甘肃省/天水市/秦州区/乙镇/乙村", profile="lanzhou-basic-2023")
    ingest(s, [_report("P1", [
        Result("net.core.icmp", "核心网关", "ok", "…", value=0.004, unit="seconds", details={"loss_ratio": 0.0}),
        Result("net.core.tcp", 'odd "name"\\x', "fail", "…"),
        Result("device.printer", "打印机", "warn", "…", details={"methods": [{"method": "snmp", "supplies": SUPPLIES}],
                                                                "supplies": SUPPLIES}),
        Result("device.copier", "复印机", "ok", "…", details={"supplies": SUPPLIES[:1]}),
        Result("device.kiosk", "一体机", "error", "…"),
        Result("device.queue", "取号机", "fail", "…"),
    ])])
    rescore(s, ["P1", "P2"])  # what the collector's score keeper does after every ingest
    yield s
    s.close()


def _parsed(text: bytes) -> dict:
    return {(f.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text.decode()) for s in f.samples}


def test_series_and_labels(store):
    series = _parsed(FleetCollector(store).render())
    region = "甘肃省/兰州市/城关区/甲镇/甲村"
    assert series[("pointwatch_point_up", (("point", "P1"), ("profile", "national-basic"), ("region", region)))] == 1
    assert series[("pointwatch_point_up", (("point", "P2"), ("profile", "lanzhou-basic-2023"),
                                           ("region", "甘肃省/天水市/秦州区/乙镇/乙村")))] == 0
    assert series[("pointwatch_check_status", (("check", "net.core.tcp"), ("point", "P1"), ("region", region),
                                               ("target", 'odd "name"\\x')))] == 2
    assert series[("pointwatch_core_rtt_seconds", (("point", "P1"), ("region", region), ("target", "核心网关")))] == 0.004
    assert series[("pointwatch_core_loss_ratio", (("point", "P1"), ("region", region), ("target", "核心网关")))] == 0
    devices = {dict(k[1])["device"]: v for k, v in series.items() if k[0] == "pointwatch_device_up"}
    assert devices == {"打印机": 1, "复印机": 1, "取号机": 0}  # an error says nothing: no sample
    supply = {(dict(k[1])["device"], dict(k[1])["target"]): v for k, v in series.items()
              if k[0] == "pointwatch_printer_supply_ratio"}
    assert supply == {("打印机", "toner/1.1"): 0.42, ("复印机", "toner/1.1"): 0.42}
    # No label carries a time or a message; every family is declared even when it has no samples.
    text = FleetCollector(store).render().decode()
    for fam in FAMILIES:
        assert f"# TYPE {fam.name} gauge" in text
    assert "…" not in text


def test_region_scope(store):
    text = FleetCollector(store, "甘肃省/天水市").render().decode()
    assert 'point="P2"' in text and 'point="P1"' not in text


def test_scores_and_alerts_are_exported(store):
    from collector.store.models import Alert

    now = datetime.now(timezone.utc)
    with store.session() as ses:
        ses.add(Alert(fingerprint="f" * 64, open_key="k1", rule="device_missing", point_code="P1",
                      region_path="甘肃省/兰州市/城关区/甲镇/甲村", check="device.queue", target="取号机",
                      severity="warning", state="firing", summary="必备设备缺失", pending_since=now, fired_at=now,
                      updated_at=now))
    series = _parsed(FleetCollector(store).render())
    region = "甘肃省/兰州市/城关区/甲镇/甲村"
    [(_, _, earned, items)] = [r for r in pointscores.metrics_compliance(store) if r[0] == "P1"]
    assert series[("pointwatch_compliance_score", (("point", "P1"), ("profile", "national-basic"),
                                                   ("region", region)))] == earned
    exported = {dict(k[1])["item"]: v for k, v in series.items()
                if k[0] == "pointwatch_compliance_item_ok" and dict(k[1])["point"] == "P1"}
    assert exported == {item: float(ok) for item, ok in items} and exported  # automatic items only
    assert series[("pointwatch_alerts_firing", (("check", "device.queue"), ("point", "P1"), ("region", region)))] == 1


def test_stored_lines_follow_a_point_that_moves_region(store):
    points.upsert_point(store, "P1", "一号点", "甘肃省/天水市/秦州区/丙镇/丙村")
    assert metriclines.points_with_stale_lines(store) == ["P1"]
    rescore(store, metriclines.points_with_stale_lines(store))
    text = FleetCollector(store, "甘肃省/天水市").render().decode()
    assert 'pointwatch_check_status{check="net.core.tcp",point="P1",region="甘肃省/天水市/秦州区/丙镇/丙村"' in text
    assert "城关区" not in text


def test_agent_and_collector_turn_a_result_into_the_same_series():
    from agent.metrics_endpoint import render as agent_render

    results = [Result("net.core.icmp", "核心网关", "warn", "…", value=0.3, details={"loss_ratio": 0.34}),
               Result("device.printer", "打印机", "ok", "…", details={"supplies": SUPPLIES}),
               Result("device.kiosk", "一体机", "error", "…"), Result("device.queue", "取号机", "fail", "…"),
               Result("usage.processes", "本机", "fail", "…", value=2)]
    agent = _parsed(agent_render("P9", {"all": (0.0, results)}))
    rows = sorted((r.check, r.target, r.status, r.value, r.details.get("loss_ratio"), r.details.get("supplies"))
                  for r in results)
    lines = point_lines("P9", "甘肃省", "national-basic", rows, None)
    collector = {(name, tuple(kv for kv in labels if kv[0] != "region")): v
                 for (name, labels), v in _parsed("".join(lines.values()).encode()).items()}
    assert collector == agent and len(agent) == 10


def test_supplies_of_reads_both_detail_shapes():
    assert supplies_of({"supplies": SUPPLIES}) == [("toner/1.1", 0.42)]
    assert supplies_of({"methods": [{"method": "icmp"}, {"method": "snmp", "supplies": SUPPLIES}]}) == [
        ("toner/1.1", 0.42)]
    assert supplies_of({"supplies": "garbage", "methods": "x"}) == []


def test_agent_metrics_key_parses_and_is_off_by_default():
    base = 'point: {code: "620102001001"}\n'
    assert agent_config.parse(base).metrics.listen is None
    assert agent_config.parse(base + 'metrics: {listen: "127.0.0.1:9465"}\n').metrics.listen == ("127.0.0.1", 9465)
    with pytest.raises(ConfigError) as err:
        agent_config.parse(base + 'metrics: {listen: "127.0.0.1"}\n', "agent.yaml")
    assert "agent.yaml" in str(err.value) and "metrics.listen" in str(err.value)


def test_agent_endpoint_serves_last_results_per_job():
    port = free_port()
    cfg = agent_config.parse(f'point: {{code: "P9"}}\nmetrics: {{listen: "127.0.0.1:{port}"}}\n')
    from agent import metrics_endpoint

    endpoint = metrics_endpoint.start(cfg)
    assert isinstance(endpoint, MetricsEndpoint)
    try:
        endpoint.update("network", [Result("net.core.icmp", "核心网关", "warn", "…", value=0.3,
                                           details={"loss_ratio": 0.34})])
        endpoint.update("devices", [Result("device.printer", "打印机", "ok", "…", details={"supplies": SUPPLIES})])
        endpoint.update("network", [Result("net.core.icmp", "核心网关", "ok", "…", value=0.01,
                                           details={"loss_ratio": 0.0})])
        r = httpx.get(f"http://127.0.0.1:{port}/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        series = _parsed(r.content)
        assert series[("pointwatch_check_status", (("check", "net.core.icmp"), ("point", "P9"),
                                                   ("target", "核心网关")))] == 0
        assert series[("pointwatch_core_rtt_seconds", (("point", "P9"), ("target", "核心网关")))] == 0.01
        assert series[("pointwatch_printer_supply_ratio", (("device", "打印机"), ("kind", "printer"), ("point", "P9"),
                                                           ("target", "toner/1.1")))] == 0.42
        assert httpx.get(f"http://127.0.0.1:{port}/other").status_code == 404
    finally:
        endpoint.stop()
    assert metrics_endpoint.start(agent_config.parse('point: {code: "P9"}\n')) is None


def test_dashboards_are_built_from_build_py_and_carry_the_variables():
    import importlib.util

    spec = importlib.util.spec_from_file_location("dash_build", REPO / "dashboards" / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    for name, text in build.render_all().items():
        assert (REPO / "dashboards" / name).read_text(encoding="utf-8") == text, f"run dashboards/build.py ({name})"
        dash = json.loads(text)
        names = {v["name"] for v in dash["templating"]["list"]}
        assert {"datasource", "region"} <= names
        assert any("\u4e00" <= ch <= "\u9fff" for ch in dash["title"])


def test_every_alerting_rule_has_a_firing_promtool_case():
    rules = yaml.safe_load((REPO / "dashboards/rules/pointwatch.rules.yml").read_text(encoding="utf-8"))
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tested = set()
    for path in (REPO / "dashboards/tests").glob("*.yaml"):
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            tested |= {t["alertname"] for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
    assert len(alerts) == 11 and alerts <= tested, alerts - tested
