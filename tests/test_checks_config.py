"""Bad config -> exit 2 with the file, line and field; the families' own sections validate at load."""

from __future__ import annotations

import pytest

from agent import cli
from agent.config import parse

BASE = 'point: {code: "T3CFG"}\n'


@pytest.mark.parametrize("body, field, line", [
    ("checks:\n  disabled: [net.core.icmp, usage.nonsense]\n", "checks.disabled[1]", 3),
    ("isolation:\n  allowed_subnets: [10.0.0.0/8, 10.300.0.0/16]\n", "isolation.allowed_subnets[1]", 3),
    ("usage:\n  allowed_ports: [22, 70000]\n", "usage.allowed_ports[1]", 3),
    ("core_network:\n  tcp:\n    - {target: '10.10.1.20:70000'}\n", "core_network.tcp[0].target", 4),
    ("core_network:\n  ca_bundle: /nonexistent/ca.pem\n", "core_network.ca_bundle", 3),
    ("usage:\n  allowed_software: [teamviewer, minesweeper]\n", "usage.allowed_software[1]", 3),
    ("isolation:\n  internet_canaries:\n    - {method: icmp}\n", "isolation.internet_canaries[0]", 4),
    ("isolation:\n  internet_canaries:\n    - {url: 'http://www.example.com/'}\n",
     "isolation.internet_canaries[0].url", 4),
])
def test_bad_config_exits_2_naming_the_field(tmp_path, capsys, body, field, line):
    path = tmp_path / "agent.yaml"
    path.write_text(BASE + body, encoding="utf-8")
    assert cli.main(["check", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:{line}: {field}:" in err, err
    assert err.startswith("配置错误")


def test_unknown_check_id_lists_the_known_ones(tmp_path, capsys):
    path = tmp_path / "agent.yaml"
    path.write_text(BASE + "checks: {disabled: [isolation.wifi]}\n", encoding="utf-8")
    assert cli.main(["check", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "unknown check id 'isolation.wifi'" in err and "isolation.interfaces" in err


def test_good_sections_parse():
    cfg = parse(BASE + """
core_network:
  dns: [{name: ybj.example.gov.cn, expect: [10.10.1.20]}]
  https: [{url: "https://10.10.1.20/health", name: 网上办理渠道}]
isolation:
  internet_canaries: [{target: "223.5.5.5:53"}, {target: 114.114.114.114, method: icmp}, {name: www.baidu.com}]
  allowed_subnets: [10.0.0.0/8]
usage: {allowed_software: [todesk], allowed_ports: [22]}
""")
    assert [(c.method, c.target, c.port) for c in cfg.isolation.internet_canaries] == [
        # A canary on port 53 is a DNS server: it counts only when it answers a DNS query (issue 16).
        ("dns_server", "223.5.5.5", 53), ("icmp", "114.114.114.114", None), ("dns", "www.baidu.com", None)]
    assert cfg.core_network.dns[0].expect == ["10.10.1.20"]
    assert cfg.usage.allowed_software == ["todesk"] and cfg.usage.catalogue
