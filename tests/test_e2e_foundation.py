"""End to end: a real collector (uvicorn on a free port) and a real agent process, over real sockets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import REPO, free_port
from tests.helpers import POINT, REGION

COLLECTOR = [sys.executable, "-m", "collector.cli"]
AGENT = [sys.executable, "-m", "agent.cli"]


def _get(url: str, token: str | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def collector(tmp_path):
    data = tmp_path / "data"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("POINTWATCH_DATABASE_URL", None)

    def cli(*args, stdin: str | None = None) -> str:
        return subprocess.run([*COLLECTOR, "--data-dir", str(data), *args], check=True, capture_output=True,
                              text=True, timeout=60, env=env, input=stdin).stdout.strip()

    cli("points", "add", "--code", POINT, "--name", "某村医保服务点", "--region", REGION)
    port = free_port()
    log = open(tmp_path / "collector.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([*COLLECTOR, "--data-dir", str(data), "serve", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: _safe_status(base + "/healthz") == 200, 30, "collector /healthz")
        yield base, cli
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def _logged_in_page(base: str, username: str, password: str, path: str) -> str:
    """Log in through the form, as a browser would, and fetch a page with the session cookie."""
    import http.cookiejar
    import re
    import urllib.parse

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(base + "/login", timeout=10) as resp:  # the form's CSRF token and its cookie
        token = re.search(r'name="csrf_token" value="([^"]+)"', resp.read().decode()).group(1)
    form = urllib.parse.urlencode({"username": username, "password": password, "next": path,
                                   "csrf_token": token}).encode()
    request = urllib.request.Request(base + "/login", data=form, headers={"Origin": base})
    with opener.open(request, timeout=10) as resp:
        assert resp.url == base + path, f"login did not land on {path}: {resp.url}"
        return resp.read().decode()


def _safe_status(url):
    try:
        return _get(url)[0]
    except OSError:
        return None


def test_agent_report_reaches_collector_and_reads_back(collector, tmp_path):
    base, cli = collector
    admin = cli("tokens", "create", "--role", "admin", "--person", "信息科")
    code = cli("enroll-code", "create", "--point", POINT)
    port = base.rsplit(":", 1)[1]
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"""
point: {{code: "{POINT}", name: 某村医保服务点}}
collector: {{url: "{base}"}}
state_dir: "{(tmp_path / 'state').as_posix()}"
intervals: {{network: 5s, devices: 5m, compliance: 5m, identity: 5m}}
core_network:
  timeout: 1s
  count: 2
  icmp: [{{target: 127.0.0.1, name: 核心网关}}]
  tcp: [{{target: "127.0.0.1:{port}", name: 采集端}}, {{target: "127.0.0.1:1", name: 关闭的端口}}]
""", encoding="utf-8")
    enrolled = subprocess.run([*AGENT, "enroll", "--config", str(cfg), "--code", code],
                              capture_output=True, text=True, timeout=60)
    assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
    token_file = tmp_path / "state" / "token"
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"

    agent = subprocess.Popen([*AGENT, "run", "--config", str(cfg)], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        def point_with_results():
            status, body = _get(f"{base}/api/v1/points/{POINT}", admin)
            doc = json.loads(body) if status == 200 else {}
            return doc if {r["check"] for r in doc.get("results", [])} >= {"net.core.tcp", "net.core.icmp"} else None

        point = _wait_for(point_with_results, 60, "the agent's first report")
    finally:
        agent.terminate()
        out, _ = agent.communicate(timeout=20)
    results = {(r["check"], r["target"]): r for r in point["results"]}
    assert results[("net.core.tcp", "采集端")]["status"] == "ok"
    assert results[("net.core.tcp", "关闭的端口")]["status"] == "fail"
    assert "拒绝连接" in results[("net.core.tcp", "关闭的端口")]["message"]
    assert results[("net.core.icmp", "核心网关")]["status"] in ("ok", "warn")
    assert point["up"] is True and point["state"] == "fail"
    assert agent.returncode == 0, out

    status, reports = _get(f"{base}/api/v1/points/{POINT}/reports", admin)
    assert status == 200 and json.loads(reports)["reports"][0]["seq"] >= 1
    status, metrics = _get(f"{base}/metrics")
    assert f'pointwatch_point_up{{point="{POINT}"' in metrics
    assert 'pointwatch_check_status{check="net.core.tcp"' in metrics
    cli("users", "create", "--username", "xxk", "--role", "viewer", "--region", "甘肃省/兰州市/城关区",
        "--person", "县信息科", "--password-stdin", stdin="county-it-2026\n")
    page = _logged_in_page(base, "xxk", "county-it-2026", "/")
    assert "某村医保服务点" in page and "不合格" in page


def test_check_json_prints_the_contract():
    proc = subprocess.run([*AGENT, "check", "--config", str(REPO / "configs" / "agent.example.yaml"), "--json"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode in (0, 1), proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["point"]["code"] == "620102001001"
    assert set(doc["summary"]) == {"ok", "warn", "fail", "error"}
    assert sum(doc["summary"].values()) == len(doc["results"]) > 0
    for r in doc["results"]:
        assert {"check", "target", "status", "value", "unit", "message", "details"} <= set(r)
        assert r["status"] in ("ok", "warn", "fail", "error")
    assert proc.returncode == (1 if doc["summary"]["fail"] or doc["summary"]["error"] else 0)
