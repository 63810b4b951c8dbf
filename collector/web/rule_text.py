"""A standards rule as county staff read it: one Chinese sentence from the parsed rule (collector/scoring/rules.py).

    all: ["identity.matches_enrolment == ok"]   hold: 95%   ->  终端人机信息相符，且 95% 以上时间满足

The expression itself stays in the profile and the API (``Rule.text``); pages, the PDF and the XLSX show
this sentence. Names come from the one label table (collector/web/labels.py); the phrases below say what a
check being ok means where "<名称>正常" would be vaguer than staff say it.
"""

from __future__ import annotations

from agent import vocabulary as v
from collector.scoring.rules import Combo, CountCond, Rule, StatusCond
from collector.web.labels import CHECK_LABEL, DEVICE_LABEL, STATUS_LABEL

# What "<check> == ok" says, where it says more than "<名称>正常".
OK_PHRASE = {
    v.NET_CORE_ICMP: "核心网络可 ping 通",
    v.NET_CORE_TCP: "医保平台端口可连接",
    v.NET_CORE_DNS: "域名解析正常",
    v.NET_CORE_HTTPS: "网上办理渠道可访问",
    v.ISOLATION_INTERNET: "终端不能访问互联网",
    v.IDENTITY_MATCHES_ENROLMENT: "终端人机信息相符",
}
ALSO_WARN = "（警告亦可）"
COUNT_ATTR = {"present": "在位", "ok": "正常", "reported": "有检测结果"}
COUNT_OP = {">=": "至少 {n} 台", ">": "多于 {n} 台", "==": "恰好 {n} 台", "!=": "不是 {n} 台", "<=": "至多 {n} 台",
            "<": "少于 {n} 台"}


def check_name(check: str) -> str:
    if check in CHECK_LABEL:
        return CHECK_LABEL[check]
    family, _, kind = check.partition(".")
    if family == "device" and kind in DEVICE_LABEL:
        return DEVICE_LABEL[kind]
    return check


def _status(cond: StatusCond) -> str:
    name = check_name(cond.check)
    allowed = cond.allowed
    excluded = [s for s in v.STATUSES if s not in allowed]
    if allowed == {v.OK}:
        text = OK_PHRASE.get(cond.check, f"{name}正常")
    elif allowed == {v.OK, v.WARN}:
        text = OK_PHRASE.get(cond.check, f"{name}正常") + ALSO_WARN
    elif not excluded:
        text = f"{name}有检测结果"
    elif len(excluded) == 1:
        text = f"{name}不为“{STATUS_LABEL[excluded[0]]}”"
    else:
        text = f"{name}为" + "或".join(f"“{STATUS_LABEL[s]}”" for s in v.STATUSES if s in allowed)
    return text + (f"（目标 {cond.target}）" if cond.target else "")


def _count(cond: CountCond) -> str:
    name = check_name(cond.check)
    if cond.op == "==" and cond.value == 0:
        return f"没有{COUNT_ATTR[cond.attr]}的{name}"
    return f"{name}{COUNT_OP[cond.op].format(n=cond.value)}{COUNT_ATTR[cond.attr]}"


def _node(node, nested: bool) -> str:
    if isinstance(node, StatusCond):
        return _status(node)
    if isinstance(node, CountCond):
        return _count(node)
    if not isinstance(node, Combo):
        raise TypeError(f"not a rule node: {node!r}")
    parts = [_node(c, True) for c in node.children]
    if node.kind == "all":
        text = "、".join(parts)
    elif node.kind == "any":
        text = "或".join(parts)
    else:  # none
        text = "以下情况均未出现：" + "、".join(parts) if len(parts) > 1 else f"未出现{parts[0]}的情况"
    return f"（{text}）" if nested and len(node.children) > 1 else text


def hold_phrase(hold: float) -> str:
    return "始终满足" if hold >= 1 else f"{hold * 100:g}% 以上时间满足"


def rule_sentence(rule: Rule) -> str:
    """The rule as one sentence: its conditions, then how much of the period they must hold."""
    hold = hold_phrase(rule.hold)
    return f"{_node(rule.root, False)}，且{'' if hold.startswith('始终') else ' '}{hold}"


def item_sentence(profile, item_id: str) -> str:
    """The sentence for a profile's item; "" for a manual item, an unknown item or no profile."""
    try:
        item = profile.item(item_id) if profile is not None else None
    except KeyError:
        return ""
    return rule_sentence(item.rule) if item is not None and item.rule is not None else ""
