"""/metrics is open by default; ``metrics: {bearer_token_file: FILE}`` makes it need that token (issue 18, item 14).

Prometheus sends it with ``authorization: {credentials_file: …}``, as dashboards/prometheus.example.yml shows.
"""

from __future__ import annotations

import subprocess

import pytest
from fastapi.testclient import TestClient

from collector.app import create_app
from collector.settings import Settings, SettingsError
from collector.store import points
from tests.conftest import REPO, require_tool
from tests.helpers import POINT, REGION

TOKEN = "3f9a1c0e7b2d4a6f8e1c3b5d7f9a2c4e"


def settings_with(tmp_path, section: str) -> Settings:
    config = tmp_path / "collector.yaml"
    config.write_text(section, encoding="utf-8")
    return Settings.load(str(config), str(tmp_path / "data"))


def test_metrics_open_by_default(store, tmp_path):
    points.upsert_point(store, POINT, "某村服务点", REGION)
    client = TestClient(create_app(Settings(data_dir=tmp_path / "data"), store=store))
    r = client.get("/metrics")
    assert r.status_code == 200 and POINT in r.text


def test_metrics_token_required_when_configured(store, tmp_path):
    points.upsert_point(store, POINT, "某村服务点", REGION)
    (tmp_path / "metrics.token").write_text(TOKEN + "\n")
    settings = settings_with(tmp_path, f"metrics: {{bearer_token_file: {tmp_path / 'metrics.token'}}}\n")
    client = TestClient(create_app(settings, store=store))
    for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Authorization": TOKEN},
                    {"Authorization": f"Basic {TOKEN}"}):
        for url in ("/metrics", f"/metrics?region={REGION}"):
            r = client.get(url, headers=headers)
            assert r.status_code == 401 and POINT not in r.text, (url, headers)
            assert r.headers["www-authenticate"] == "Bearer"
    r = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and POINT in r.text
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200


@pytest.mark.parametrize("content,problem", [(None, "No such file"), ("short", "at least 16"),
                                             ("two words here-and-there", "one word")])
def test_a_bad_token_file_stops_the_start(tmp_path, content, problem):
    path = tmp_path / "metrics.token"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SettingsError, match=problem):
        settings_with(tmp_path, f"metrics: {{bearer_token_file: {path}}}\n")
    with pytest.raises(SettingsError, match="bearer_token_file"):
        settings_with(tmp_path, "metrics: {token: x}\n")


def test_the_documented_scrape_config_is_valid(tmp_path):
    promtool = require_tool("promtool", "prometheus")
    token = tmp_path / "pointwatch-metrics.token"
    token.write_text(TOKEN)
    example = (REPO / "dashboards" / "prometheus.example.yml").read_text(encoding="utf-8")
    line = "# authorization: {type: Bearer, credentials_file: /etc/prometheus/pointwatch-metrics.token}"
    assert example.count(line) == 2  # both collector jobs
    enabled = example.replace(line, line[2:].replace("/etc/prometheus/pointwatch-metrics.token", str(token)))
    enabled = enabled.replace("rules/pointwatch.rules.yml", str(REPO / "dashboards/rules/pointwatch.rules.yml"))
    config = tmp_path / "prometheus.yml"
    config.write_text(enabled, encoding="utf-8")
    res = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
