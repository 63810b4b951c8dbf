"""The 依据 of every item says where its verdict comes from, in the same words on the point page and on
the signed PDF/XLSX sheet (collector/web/item_text.py is the one source): measured with the project's hold
policy named as such, 自动+人工 evidence, reviewer only, not applicable to this point, 推定 points."""

from __future__ import annotations

from collector.evidence.period import parse_period
from collector.evidence.sheet import build_sheet
from collector.scoring import load_profiles, score_period
from collector.web.item_text import item_basis
from tests.test_scoring_engine import IV, stream

PROFILES = load_profiles()


def stored(days=30):
    """The engine's test stream as the store hands it to the evidence sheet: (POSIX time, check, target, status)."""
    for o in stream(days=days):
        at = o.at if isinstance(o.at, float) else o.at.timestamp()
        yield at, (f"device.{o.kind}" if o.kind and o.check == "device" else o.check), o.target, o.status
VILLAGE = "甘肃省/兰州市/榆中县/城关镇/东关村"


def test_the_evidence_sheet_words_each_item_as_the_page_does():
    period = parse_period("2024-03-01", "2024-03-30")
    sheet = build_sheet("lanzhou-basic-2023", stored(), period, IV, level="village")
    scored = score_period(PROFILES["lanzhou-basic-2023"], stream(days=30), period.start, period.end, IV,
                          level="village")
    lanzhou = PROFILES["lanzhou-basic-2023"]
    by_id = {i.id: i for i in scored.items}
    for row in sheet.rows:
        assert row.basis == item_basis(by_id[row.item_id], lanzhou.item(row.item_id), "village"), row.item_id
    rows = {r.item_id: r for r in sheet.rows}
    assert rows["network.query"].basis.startswith("自动+人工：分值由评审组现场评定；监测所见")
    assert "分值为推定" in rows["staff.village_remainder"].basis
    assert "pointwatch 策略要求 ≥95%，非标准原文" in rows["network.core"].basis
    assert any("pointwatch 的评分策略" in n for n in sheet.notes)


def test_a_village_is_not_held_to_town_items_on_the_sheet():
    period = parse_period("2024-03-01", "2024-03-30")
    sheet = build_sheet("xiangyuan-county", stored(), period, IV, level="village")
    assert sheet.rows and all(r.state == "not_applicable" for r in sheet.rows)
    assert all(r.basis.startswith("不适用：该项不要求村（社区）服务点") for r in sheet.rows)
    assert sheet.total == 0 and any("不适用于本级服务点" in n for n in sheet.notes)
    town = build_sheet("xiangyuan-county", stored(), period, IV, level="town")
    assert town.total > 0 and not any(r.state == "not_applicable" for r in town.rows)
