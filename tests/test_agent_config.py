"""Agent config: the example loads; every bad file exits 2 with file, line and field in the message."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agent import config
from agent.confignode import ConfigError
from tests.conftest import REPO

EXAMPLE = REPO / "configs" / "agent.example.yaml"

MINIMAL = """\
point: {code: "620102001001", name: 测试点}
core_network:
  timeout: 1s
  tcp:
    - {target: "10.10.1.20:443", name: 省医保信息平台}
"""


def test_example_config_loads():
    cfg = config.load(EXAMPLE)
    assert cfg.point.code == "620102001001"
    assert cfg.intervals["network"] == 60
    assert cfg.core_network.tcp[0].port == 8000


def test_durations_and_defaults():
    cfg = config.parse(MINIMAL + "intervals: {network: 90s, devices: 5m, identity: 1h}\n")
    assert cfg.intervals == {"network": 90, "devices": 300, "compliance": 300, "identity": 3600}
    assert cfg.core_network.timeout == 1.0
    assert (cfg.core_network.tcp[0].host, cfg.core_network.tcp[0].port) == ("10.10.1.20", 443)


@pytest.mark.parametrize("text, line, field, words", [
    (MINIMAL + "colector: {url: http://x}\n", 6, "colector", "unknown key 'colector'"),
    (MINIMAL.replace('"10.10.1.20:443"', '"10.10.1.20:70000"'), 5, "core_network.tcp[0].target", "70000"),
    (MINIMAL.replace('"10.10.1.20:443"', '"10.10.1.999:443"'), 5, "core_network.tcp[0].target", "10.10.1.999"),
    (MINIMAL.replace("timeout: 1s", "timeout: soon"), 3, "core_network.timeout", "not a duration"),
    (MINIMAL + "intervals: {network: [60]}\n", 6, "intervals.network", "not a duration"),
    (MINIMAL + "isolation: {allowed_subnets: [10.0.0.0/33]}\n", 6, "isolation.allowed_subnets[0]", "subnet"),
    (MINIMAL + "checks: {disabled: [net.core.telnet]}\n", 6, "checks.disabled[0]", "unknown check id"),
    (MINIMAL + "core_network: {}\n", 6, "core_network", "given twice"),
    ("point: {name: x}\n", 1, "point", "missing required key 'code'"),
    (MINIMAL + "collector: {url: ftp://x}\n", 6, "collector.url", "not an http"),
    ("point: [\n", 2, "", "YAML syntax error"),
])
def test_bad_config_names_line_and_field(text, line, field, words):
    with pytest.raises(ConfigError) as info:
        config.parse(text, "agent.yaml")
    err = info.value
    assert (err.line, err.field) == (line, field), str(err)
    assert words in str(err)
    assert str(err).startswith(f"agent.yaml:{line}: ")


def test_cli_exit_code_2_names_file_line_field(tmp_path):
    bad = tmp_path / "agent.yaml"
    bad.write_text(MINIMAL.replace('"10.10.1.20:443"', '"10.10.1.20:70000"'), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "agent.cli", "check", "--config", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"{bad}:5: core_network.tcp[0].target: port 70000 is out of range 1-65535" in proc.stderr


def test_cli_missing_file_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "agent.cli", "check", "--config", str(tmp_path / "nope.yaml")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "file not found" in proc.stderr
