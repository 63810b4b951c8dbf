"""The one label table of the collector: what the web pages, alert messages, the PDF and the XLSX call things.

The words and their Chinese names come from agent/vocabulary.py (shared with the agent); this module only
gives them the names the templates use and adds what is presentation alone: the pillars' descriptions,
supply states, the evidence sheet's item states and pillar-prefixed check names, spans of time.
"""

from __future__ import annotations

from agent import vocabulary as v

STATE_LABEL = v.POINT_STATE_CN
STATUS_LABEL = v.STATUS_CN
ROLE_LABEL = v.ROLE_CN
CHECK_LABEL = v.CHECK_CN
DEVICE_LABEL = v.DEVICE_KIND_CN
PROFILE_LABEL = v.PROFILE_CN
FAMILY_OF = v.FAMILY_PREFIXES
family_of = v.family_of

SUPPLY_STATE = {"some_remaining": "尚有余量", "unknown": "未知", "unlimited": "不限量", "other": "其他"}
_PILLAR_TEXT = {
    "isolation": "终端只接入医保专网，不能访问互联网",
    "identity": "终端是登记的那台机器（人机信息相符）",
    "usage": "终端只用于医保业务：无远程控制、聊天、游戏等软件，无未登记移动存储",
}
PILLARS = tuple((family, v.PILLAR_CN[family], text) for family, text in _PILLAR_TEXT.items())

# The evidence sheet: an item's state, and a check under its pillar ("专网：互联网隔离") where it has one.
ITEM_STATE_LABEL = {"met": "达标", "not_met": "未达标", "manual": "待评审", "no_data": "无数据", "not_applicable": "不适用"}
SHEET_CHECK_LABEL = {check: f"{v.PILLAR_CN[family_of(check)]}：{name}" if family_of(check) in v.PILLAR_CN else name
                     for check, name in CHECK_LABEL.items()}


def duration_cn(seconds: float) -> str:
    """A span as staff say it: "45 秒", "12 分钟", "3 小时 5 分钟", "2 天 4 小时"."""
    seconds = max(int(seconds), 0)
    if seconds < 60:
        return f"{seconds} 秒"
    if seconds < 3600:
        return f"{seconds // 60} 分钟"
    if seconds < 86400:
        return f"{seconds // 3600} 小时 {seconds % 3600 // 60} 分钟"
    return f"{seconds // 86400} 天 {seconds % 86400 // 3600} 小时"
