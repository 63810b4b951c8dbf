"""What a score sheet says of one item, in Chinese: the 依据 column of the point page, the PDF and the XLSX.

One function for all three, so the page and the signed sheet never word a verdict differently. It says where
the verdict comes from: the monitor's measurement (with the share it held and whose rule the hold is), the
monitor's evidence for an item the reviewer scores (自动+人工), the reviewer alone, or not this point's
requirement at all; and it marks points the document does not print (推定) and 一票否决 items.
"""

from __future__ import annotations

from collector.evidence.period import local
from collector.scoring.rules import HOLD_POLICY
from collector.scoring.sheets import ItemScore
from collector.web.rule_text import rule_sentence

LEVEL_CN = {"province": "省级", "city": "市级", "county": "县级", "town": "乡镇（街道）", "village": "村（社区）"}
EVIDENCE_CN = {"met": "达标", "not_met": "未达标"}


def _hold(item: ItemScore) -> str:
    if item.hold is None:
        return ""
    share = f"≥{item.hold * 100:g}%"
    return f"（{item.hold_source}要求 {share}，非标准原文）" if item.hold_source == HOLD_POLICY else f"（要求 {share}）"


def _measured(item: ItemScore) -> list[str]:
    if item.availability is None:
        return ["本期无可评价时段（无数据）"] if item.state == "no_data" else []
    parts = [f"达标时段占比 {item.availability * 100:.2f}%{_hold(item)}"]
    if item.incidents:
        parts += [f"中断 {item.incidents} 次", f"首次 {local(item.first_failure)}，末次 {local(item.last_failure)}"]
    else:
        parts.append("期间无中断")
    return parts


def item_basis(item: ItemScore, spec=None, level: str | None = None) -> str:
    """依据 of a sheet's item; ``spec`` is the profile's Item (its rule, note, review), ``level`` the point's."""
    sentence = rule_sentence(spec.rule) if spec is not None and spec.rule is not None else (item.rule or "")
    note = spec.note if spec is not None and spec.note else ""
    if item.state == "not_applicable":
        parts = [f"不适用：该项不要求{LEVEL_CN.get(level or '', '本级')}服务点，不计入总分"]
    elif item.mode == "assisted":
        parts = ["自动+人工：分值由评审组现场评定"]
        if item.evidence:
            parts.append(f"监测所见{EVIDENCE_CN[item.evidence]}（{sentence}）" if sentence else
                         f"监测所见{EVIDENCE_CN[item.evidence]}")
        parts += _measured(item)
        if item.review:
            parts.append(f"现场查验：{item.review}")
    elif item.state == "manual":
        parts = ["人工评审" + (f"：{note}" if note else "")]
        note = ""
        if item.review:
            parts.append(f"现场查验：{item.review}")
    else:
        parts = _measured(item)
        if sentence:
            parts.append(f"规则：{sentence}")
    if note:
        parts.append(f"说明：{note}")
    if item.inferred:
        parts.append("分值为推定（文件未印）" + (f"：{item.inferred_reason}" if item.inferred_reason else ""))
    if item.vetoed:
        parts.append("已一票否决：总分计 0")
    elif item.veto:
        parts.append("一票否决项")
    return "；".join(parts)
