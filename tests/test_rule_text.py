"""Rules as county staff read them: one Chinese sentence per parsed rule (collector/web/rule_text.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from collector.scoring import load_profiles
from collector.scoring.engine import ItemScore
from collector.scoring.rules import parse_condition, parse_rule
from collector.web.item_text import item_basis
from collector.web.rule_text import check_name, item_sentence, rule_sentence


def said(node) -> str:
    return rule_sentence(parse_rule(node))


def test_the_issue_example():
    assert said({"all": ["identity.matches_enrolment == ok"], "hold": "95%"}) == "终端人机信息相符，且 95% 以上时间满足"


@pytest.mark.parametrize("cond, sentence", [
    ("isolation.internet == ok", "终端不能访问互联网"),
    ("net.core.tcp == ok", "医保平台端口可连接"),
    ("usage.removable_media == ok", "移动存储正常"),            # no phrase of its own: <名称>正常
    ("net.core.dns in [ok, warn]", "域名解析正常（警告亦可）"),
    ("net.core.dns not in [fail, error]", "域名解析正常（警告亦可）"),  # the same statuses, the same words
    ("usage.processes != fail", "禁用软件与必需进程不为“不合格”"),
    ("usage.processes == fail", "禁用软件与必需进程为“不合格”"),
    ("usage.processes in [warn, fail]", "禁用软件与必需进程为“警告”或“不合格”"),
    ("host.resources in [ok, warn, fail, error]", "终端资源有检测结果"),
    ("net.core.tcp[10.10.1.20:443] == ok", "医保平台端口可连接（目标 10.10.1.20:443）"),
    ("device.printer == ok", "打印机正常"),                    # a device kind's status form
])
def test_status_conditions(cond, sentence):
    assert said({"all": [cond], "hold": 1}) == f"{sentence}，且始终满足"


@pytest.mark.parametrize("cond, sentence", [
    ("device.kiosk.present >= 1", "自助服务一体机至少 1 台在位"),
    ("device.computer.present > 2", "计算机多于 2 台在位"),
    ("device.printer.ok == 2", "打印机恰好 2 台正常"),
    ("device.queue.present != 1", "自助取号机不是 1 台在位"),
    ("device.camera.reported <= 4", "摄像头至多 4 台有检测结果"),
    ("device.phone.ok < 3", "电话少于 3 台正常"),
    ("device.display.present == 0", "没有在位的电子显示屏"),
])
def test_device_counts(cond, sentence):
    assert said({"all": [cond], "hold": "90%"}) == f"{sentence}，且 90% 以上时间满足"


def test_all_any_none_and_nesting():
    assert said({"all": ["net.core.tcp == ok", "net.core.icmp in [ok, warn]"], "hold": "95%"}) == (
        "医保平台端口可连接、核心网络可 ping 通（警告亦可），且 95% 以上时间满足")
    assert said({"any": ["device.computer.present >= 1", "identity.fingerprint in [ok, warn]"], "hold": 0.9}) == (
        "计算机至少 1 台在位或终端硬件标识正常（警告亦可），且 90% 以上时间满足")
    assert said({"none": ["usage.processes == fail"], "hold": "100%"}) == (
        "未出现禁用软件与必需进程为“不合格”的情况，且始终满足")
    assert said({"none": ["usage.processes == fail", "isolation.internet == fail"], "hold": "99%"}) == (
        "以下情况均未出现：禁用软件与必需进程为“不合格”、互联网隔离为“不合格”，且 99% 以上时间满足")
    nested = {"all": ["isolation.internet == ok",
                      {"any": ["device.kiosk.present >= 1", "device.queue.present >= 1"]},
                      {"none": ["usage.removable_media == fail"]}], "hold": "99.5%"}
    assert said(nested) == ("终端不能访问互联网、（自助服务一体机至少 1 台在位或自助取号机至少 1 台在位）、"
                            "未出现移动存储为“不合格”的情况，且 99.5% 以上时间满足")


def test_every_shipped_rule_reads_as_chinese_without_the_expression():
    seen = 0
    for profile in load_profiles().values():
        for item in profile.items:
            if item.rule is None:
                assert item_sentence(profile, item.id) == ""
                continue
            text = item_sentence(profile, item.id)
            seen += 1
            assert text.endswith("时间满足") or text.endswith("始终满足"), text
            for word in ("==", "hold", "all(", "any(", "none(", "net.core", "device.", ".present", "ok", "warn"):
                assert word not in text, (profile.name, item.id, text)
    assert seen >= 30


def test_unknown_items_and_names():
    profile = next(iter(load_profiles().values()))
    assert item_sentence(profile, "no.such.item") == "" and item_sentence(None, "x") == ""
    assert check_name("device.kiosk") == "自助服务一体机" and check_name("identity.matches_enrolment") == "人机信息相符"
    assert parse_condition("net.core.tcp == ok").text == "net.core.tcp == ok"  # the expression stays as written


def test_the_sheet_basis_quotes_the_sentence_not_the_expression():
    rule = parse_rule({"all": ["identity.matches_enrolment == ok"], "hold": "95%"})
    item = ItemScore("x", "人机信息相符", "专机", 5, "met", 5.0, availability=0.97, hold=0.95, rule=rule.text)
    spec = SimpleNamespace(rule=rule, note=None, review=None)
    basis = item_basis(item, spec)
    assert "规则：终端人机信息相符，且 95% 以上时间满足" in basis and "==" not in basis
    nothing = ItemScore("x", "人机信息相符", "专机", 5, "no_data", 0.0, hold=0.95, rule=rule.text)
    assert item_basis(nothing, spec) == "本期无可评价时段（无数据）；规则：终端人机信息相符，且 95% 以上时间满足"


def test_the_evidence_sheet_rows_carry_the_sentences():
    from datetime import datetime, timezone

    from collector.evidence.period import parse_period
    from collector.evidence.sheet import build_sheet

    period = parse_period("2026-01-01", "2026-01-01")
    t0 = period.start.timestamp()
    observations = [(t0 + 60 * i, "identity.matches_enrolment", "", "ok") for i in range(0, 1440)]
    sheet = build_sheet("national-basic", observations, period, 60.0,
                        known_from=datetime(2025, 12, 1, tzinfo=timezone.utc), now=period.end)
    profile = load_profiles()["national-basic"]
    automatic = [r for r in sheet.rows if r.state != "manual"]
    assert automatic
    for row in automatic:
        assert f"规则：{item_sentence(profile, row.item_id)}" in row.basis, row.basis
        assert "==" not in row.basis and " hold " not in row.basis
