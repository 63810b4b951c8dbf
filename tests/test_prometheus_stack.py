"""The metrics, rules and dashboards against Debian's real Prometheus and promtool.

One collector (uvicorn, SQLite in tmp) holds demo data posted through the ingest API with agent tokens;
one Prometheus (temp config, tsdb in tmp, 1 s scrape and rule interval) scrapes it and loads our rules.
Then: promtool lints /metrics, checks and unit-tests the rules; every PromQL expression of every
dashboard panel and rule, with Grafana's variables substituted, must parse and return data.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import httpx
import pytest
import yaml

from agent.wire import Fingerprint, Host, Report, Result, report_to_json, utcnow
from collector.accounts import users
from collector.store import Store, points
from tests.conftest import REPO, free_port, require_tool

DASH = REPO / "dashboards"
RULES = DASH / "rules" / "pointwatch.rules.yml"
PROFILE = "national-basic"

# (code, region, story)
POINTS = [
    ("620102001001", "甘肃省/兰州市/城关区/甲镇/甲村", "healthy"),
    ("620102001002", "甘肃省/兰州市/城关区/甲镇/乙村", "silent"),
    ("620503001001", "甘肃省/天水市/秦州区/乙镇/丙村", "broken"),
    ("620503001002", "甘肃省/天水市/秦州区/乙镇/丁村", "degraded"),
]
COUNTY = "甘肃省/兰州市/城关区"


def _results(story: str) -> list[Result]:
    bad = story == "broken"
    core = "fail" if bad else "ok"
    supplies = [{"index": "1.1", "description": "黑色墨粉盒", "type": "toner", "level": 5 if bad else 80,
                 "max_capacity": 100, "ratio": 0.05 if bad else 0.8, "state": "measured"},
                {"index": "1.2", "description": "硒鼓", "type": "opc", "level": -3, "max_capacity": -2,
                 "state": "some_remaining"}]
    out = [
        Result("net.core.icmp", "核心网关", core, "…", value=None if bad else 0.004, unit="seconds",
               details={"loss_ratio": 1.0 if bad else 0.0}),
        Result("net.core.icmp", "省医保信息平台", "warn" if story == "degraded" else core, "…",
               value=None if bad else 0.25, unit="seconds", details={"loss_ratio": 1.0 if bad else 0.34}),
        Result("net.core.tcp", "省医保信息平台:443", core, "…", value=None if bad else 0.006, unit="seconds"),
        Result("isolation.internet", "223.5.5.5:53", "fail" if bad else "ok", "…"),
        Result("isolation.internet", "www.baidu.com", "ok", "…"),
        Result("identity.fingerprint", "本机", "fail" if bad else "ok", "…"),
        Result("usage.processes", "本机", "fail" if bad else "ok", "…"),
        Result("usage.removable_media", "本机", "fail" if bad else "ok", "…"),
        Result("usage.listening_ports", "本机", "fail" if bad else "ok", "…"),
        Result("device.kiosk", "自助服务一体机", "fail" if bad else "ok", "…"),
        Result("device.queue", "自助取号机", "ok", "…"),
        # Supplies as agent/checks/devices reports them: in the SNMP method's details and lifted to the top.
        Result("device.printer", "打印机", "warn" if bad else "ok", "…",
               details={"methods": [{"method": "snmp", "answered": True, "status": "ok", "supplies": supplies}],
                        "supplies": supplies}),
    ]
    return out


def _report(code: str, story: str, seq: int) -> str:
    now = utcnow()
    # A broken point's clock runs 10 minutes late (clock-skew alert).
    sent = now - timedelta(minutes=10) if story == "broken" else now
    return report_to_json(Report(
        report_id=str(uuid.uuid4()), seq=seq, agent_id=f"agent-{code}", point_code=code, agent_version="0.1.0",
        collected_at=sent, sent_at=sent, host=Host("pc-" + code, "Windows 10", None,
                                                   Fingerprint("mid-" + code, "SN" + code, [])),
        results=_results(story)))


def _wait(url: str, timeout: float, proc: subprocess.Popen, ok=lambda r: r.status_code == 200):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            r = httpx.get(url, timeout=2)
            if ok(r):
                return r
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    prometheus = require_tool("prometheus", "prometheus")
    require_tool("promtool", "prometheus")
    tmp = tmp_path_factory.mktemp("prom-stack")
    data = tmp / "collector"
    store = Store.open(data)
    tokens = {}
    for code, region, _story in POINTS:
        points.upsert_point(store, code, f"{code} 服务点", region, profile=PROFILE, report_interval_s=60)
        tokens[code] = users.create_token(store, "agent", point_code=code)
    store.close()

    port, prom_port = free_port(), free_port()
    procs = []
    log = open(tmp / "collector.log", "wb")  # noqa: SIM115 - closed at teardown
    collector = subprocess.Popen([sys.executable, "-m", "collector.cli", "--data-dir", str(data), "serve",
                                  "--host", "127.0.0.1", "--port", str(port)], cwd=REPO, stdout=log, stderr=log)
    procs.append(collector)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait(base + "/readyz", 60, collector)
        for code, _region, story in POINTS:
            if story == "silent":
                continue
            r = httpx.post(base + "/api/v1/reports", content=_report(code, story, 1).encode(),
                           headers={"Authorization": f"Bearer {tokens[code]}", "Content-Type": "application/json"})
            assert r.status_code == 202, r.text

        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": "pointwatch", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
        plog = open(tmp / "prometheus.log", "wb")  # noqa: SIM115
        prom = subprocess.Popen([prometheus, f"--config.file={tmp / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}",
                                 "--storage.tsdb.retention.time=1h", "--log.level=warn"],
                                cwd=tmp, stdout=plog, stderr=plog)
        procs.append(prom)
        prom_url = f"http://127.0.0.1:{prom_port}"
        _wait(prom_url + "/-/ready", 60, prom)

        def query(expr: str) -> dict:
            r = httpx.get(prom_url + "/api/v1/query", params={"query": expr}, timeout=10)
            return r.json()

        # Wait for scrapes and for the recording rules to have produced their first samples.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if query("pointwatch_point_up")["data"]["result"] and query("pointwatch:point_core_status:min")[
                    "data"]["result"]:
                break
            time.sleep(0.5)
        yield {"collector": base, "prometheus": prom_url, "query": query, "tmp": tmp}
    finally:
        for proc in reversed(procs):
            _stop(proc)
        log.close()


def test_promtool_check_metrics_reports_no_problems(stack):
    promtool = require_tool("promtool", "prometheus")
    body = httpx.get(stack["collector"] + "/metrics").content
    assert b"pointwatch_check_status{" in body and b"pointwatch_collector_" in body
    res = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert res.returncode == 0 and not res.stdout.strip() and not res.stderr.strip(), (res.stdout, res.stderr)


def test_region_parameter_shards_the_scrape(stack):
    body = httpx.get(stack["collector"] + "/metrics", params={"region": COUNTY}).text
    regions = set(re.findall(r'region="([^"]*)"', body))
    assert regions and all(r.startswith(COUNTY + "/") for r in regions), regions
    assert "pointwatch_collector_" not in body  # self-metrics once, on the unsharded scrape
    assert httpx.get(stack["collector"] + "/metrics", params={"region": "a/b/c/d/e/f"}).status_code == 422


def test_promtool_check_and_test_rules():
    promtool = require_tool("promtool", "prometheus")
    res = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    tests = sorted((DASH / "tests").glob("*.yaml"))
    res = subprocess.run([promtool, "test", "rules", *map(str, tests)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_example_configs_are_valid():
    promtool = require_tool("promtool", "prometheus")
    res = subprocess.run([promtool, "check", "config", str(DASH / "prometheus.example.yml")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    amtool = require_tool("amtool", "prometheus-alertmanager")
    res = subprocess.run([amtool, "check-config", str(DASH / "alertmanager.example.yml")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def substitute(expr: str, region: str, point: str) -> str:
    values = {"region": region, "point": point, "profile": ".*", "__rate_interval": "1m", "__interval": "15s",
              "__range": "5m"}
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values[m.group(1) or m.group(2)], expr)


def all_expressions() -> list[tuple[str, str]]:
    out = []
    for path in sorted(DASH.glob("*.json")):
        for panel in json.loads(path.read_text(encoding="utf-8"))["panels"]:
            out += [(f"{path.name}: {panel['title']}", t["expr"]) for t in panel.get("targets", [])]
    for group in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]:
        out += [(f"rule {r.get('alert') or r.get('record')}", r["expr"]) for r in group["rules"]]
    return out


def test_every_dashboard_and_rule_expression_returns_data(stack):
    exprs = all_expressions()
    assert len(exprs) > 30
    failures = []
    # The faults live at the broken point (another county), the healthy values at the healthy point: an
    # expression passes when every substitution parses and runs, and one of them returns data.
    choices = [(".*", POINTS[2][0]), (".*", POINTS[0][0]), (COUNTY, POINTS[0][0])]
    for where, expr in exprs:
        answered = False
        for region, point in choices:
            q = substitute(expr, region, point)
            res = stack["query"](q)
            if res.get("status") != "success":
                failures.append(f"{where}: {q}: {res.get('error')}")
            answered = answered or bool(res.get("data", {}).get("result"))
        if not answered:
            failures.append(f"{where}: no data for {expr}")
    assert not failures, "\n".join(failures)


def test_healthy_point_values_reach_prometheus(stack):
    q = stack["query"]
    up = {r["metric"]["point"]: r["value"][1] for r in q("pointwatch_point_up")["data"]["result"]}
    assert up == {"620102001001": "1", "620102001002": "0", "620503001001": "1", "620503001002": "1"}
    supply = q('pointwatch_printer_supply_ratio{point="620102001001"}')["data"]["result"]
    assert [(r["metric"]["target"], r["value"][1]) for r in supply] == [("toner/1.1", "0.8")]
    rtt = q('pointwatch_core_rtt_seconds{point="620102001001",target="核心网关"}')["data"]["result"]
    assert rtt[0]["value"][1] == "0.004"
    skew = q('pointwatch_agent_clock_skew_seconds{point="620503001001"}')["data"]["result"]
    assert float(skew[0]["value"][1]) < -590


def test_prometheus_loaded_every_rule(stack):
    rules = httpx.get(stack["prometheus"] + "/api/v1/rules").json()["data"]["groups"]
    loaded = {r["name"] for g in rules for r in g["rules"]}
    assert {"PointwatchPointSilent", "PointwatchClockSkew", "pointwatch:point_core_status:min"} <= loaded
    assert all(r["health"] == "ok" for g in rules for r in g["rules"]), rules
