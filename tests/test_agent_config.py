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


# -- the policy's agent: section (which release runs; only a signed policy may say) -------------------------------
def _upgrade_section(text: str):
    from agent.confignode import parse_yaml

    return config.upgrade_policy(parse_yaml(text, "policy.yaml").mapping(config.POLICY_KEYS)["agent"])


def test_the_agent_section_of_a_policy_is_read_with_its_defaults():
    cfg = config.parse(MINIMAL)
    assert cfg.upgrade == config.UpgradePolicy() and cfg.upgrade.version is None
    under = config.with_policy(cfg, {"agent": {"version": "0.2.1", "window": "02:00-05:00"}}, "sha256:" + "0" * 64)
    assert under.upgrade.version == "0.2.1" and under.upgrade.window == (120, 300)
    assert (under.upgrade.max_kbps, under.upgrade.downgrade) == (64, False)
    full = _upgrade_section('agent: {version: "1.0.0.3", window: "22:30-01:00", max_kbps: 8, downgrade: true}\n')
    assert (full.version, full.window, full.max_kbps, full.downgrade) == ("1.0.0.3", (1350, 60), 8, True)
    # A policy without the section runs no upgrade, whatever an earlier policy said.
    assert config.with_policy(under, {}, "sha256:" + "1" * 64).upgrade.version is None


@pytest.mark.parametrize("window, inside, outside", [
    ("02:00-05:00", (120, 200, 299), (119, 300, 0, 1439)),
    ("22:00-02:00", (1320, 1439, 0, 119), (120, 600, 1319)),   # wraps midnight
    ("00:00-24:00", (0, 720, 1439), ()),                       # any time
    ("18:00-24:00", (1080, 1439), (0, 1079)),
])
def test_the_window_is_local_minutes_and_may_wrap_midnight(window, inside, outside):
    policy = _upgrade_section(f'agent: {{version: "0.2.1", window: "{window}"}}\n')
    assert all(policy.in_window(m) for m in inside)
    assert not any(policy.in_window(m) for m in outside)


@pytest.mark.parametrize("text, line, field, words", [
    ('agent:\n  version: "0.2.1"\n', 2, "agent", "missing required key 'window'"),
    ('agent:\n  version: "0.2"\n  window: "2:00-5:00"\n', 3, "agent.window", "not a time window"),
    ('agent:\n  version: "0.2"\n  window: "02:00-25:00"\n', 3, "agent.window", "does not exist"),
    ('agent:\n  version: "0.2"\n  window: "03:00-03:00"\n', 3, "agent.window", "empty window"),
    ('agent:\n  version: "v0.2.1"\n  window: "02:00-05:00"\n', 2, "agent.version", "not a version"),
    ('agent:\n  version: "1.2.3.4.5"\n  window: "02:00-05:00"\n', 2, "agent.version", "not a version"),
    ('agent:\n  version: 0.30\n  window: "02:00-05:00"\n', 2, "agent.version", "quoted text"),
    ('agent:\n  version: "0.2"\n  window: "02:00-05:00"\n  max_kbps: 0\n', 4, "agent.max_kbps", "below the minimum 1"),
    ('agent:\n  version: "0.2"\n  window: "02:00-05:00"\n  max_kbps: 100001\n', 4, "agent.max_kbps", "above the max"),
    ('agent:\n  version: "0.2"\n  window: "02:00-05:00"\n  downgrade: yes please\n', 4, "agent.downgrade",
     "true or false"),
    ('agent:\n  version: "0.2"\n  window: "02:00-05:00"\n  channel: beta\n', 4, "agent.channel", "unknown key"),
])
def test_a_bad_agent_section_names_file_line_and_field(text, line, field, words):
    with pytest.raises(ConfigError) as info:
        _upgrade_section(text)
    err = info.value
    assert (err.line, err.field) == (line, field), str(err)
    assert words in str(err) and str(err).startswith(f"policy.yaml:{line}: {field}: ")


def test_a_policy_from_the_collector_names_its_digest_and_the_field():
    with pytest.raises(ConfigError) as info:
        config.with_policy(config.parse(MINIMAL), {"agent": {"version": "0.2.1"}}, "sha256:" + "2" * 64)
    assert str(info.value).startswith(f"policy sha256:{'2' * 64}: agent: missing required key 'window'")


@pytest.mark.parametrize("text, line, field", [
    (MINIMAL + 'agent: {version: "0.2.1", window: "02:00-05:00"}\n', 6, "agent"),
    ('point: {code: "1"}\nfallback:\n  agent: {version: "0.2.1", window: "02:00-05:00"}\n', 3, "fallback.agent"),
    ('point: {code: "1"}\nfallback:\n  agent: {}\n', 3, "fallback.agent"),
])
def test_the_local_file_may_not_order_an_upgrade(text, line, field):
    with pytest.raises(ConfigError) as info:
        config.parse(text, "agent.yaml")
    assert (info.value.line, info.value.field) == (line, field)
    assert "only come from the collector's signed policy" in str(info.value)
