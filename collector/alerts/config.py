"""The ``alerts:`` section of the collector config: rules' thresholds, inhibition, maintenance, notifiers.

Everything has a default, so a collector with no ``alerts:`` section still raises the default alerts (it
just has nowhere to send them). Unknown keys are errors naming the path, like the agent's config.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, time, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent.vocabulary import SILENCE_INTERVALS_DEFAULT
from collector.alerts.configbase import AlertConfigError, NotifierConfig, duration
from collector.alerts.notifiers import build_notifier

__all__ = ["AlertConfigError", "AlertsConfig", "NotifierConfig", "RuleConfig", "Window", "duration", "parse"]

SEVERITIES = ("critical", "warning", "info")


@dataclass
class RuleConfig:
    enabled: bool = True
    severity: str = "warning"
    failure_threshold: int = 1  # consecutive reports showing the fault before it may fire (Gatus-style)
    success_threshold: int = 1  # consecutive clean reports before it resolves
    for_s: float = 0.0  # and the fault must have lasted this long
    params: dict = field(default_factory=dict)  # rule-specific thresholds


# Rule id → defaults. Compliance violations are facts and page at once; link and device faults wait for a
# second report, because village lines drop single probes (ANCHORS §B3).
DEFAULT_RULES: dict[str, RuleConfig] = {
    "point_silent": RuleConfig(severity="critical", params={"intervals": SILENCE_INTERVALS_DEFAULT}),
    "core_unreachable": RuleConfig(severity="critical", failure_threshold=2, success_threshold=2),
    "core_degraded": RuleConfig(severity="warning", success_threshold=2, for_s=300,
                                params={"loss_ratio": 0.2, "rtt_s": 0.2}),
    "internet_reachable": RuleConfig(severity="critical"),
    "forbidden_software": RuleConfig(severity="critical"),
    "identity_changed": RuleConfig(severity="critical"),
    "removable_media": RuleConfig(severity="warning"),
    "unexpected_port": RuleConfig(severity="warning"),
    "device_missing": RuleConfig(severity="warning", failure_threshold=2, success_threshold=2),
    "printer_supply_low": RuleConfig(severity="info", params={"ratio": 0.1}),
    "clock_skew": RuleConfig(severity="warning", params={"seconds": 300}),
    # agent.policy fail: the report names a policy never issued to its point. ``grace``: how long after a
    # change the previous policy still counts as current (agent.policy ok), before it is an old one (warn).
    "policy_mismatch": RuleConfig(severity="critical", params={"grace": 900}),
}

# (source rule, rules it mutes on the same point); "*" = every other rule.
DEFAULT_INHIBIT = [("point_silent", ("*",)), ("core_unreachable", ("core_degraded",))]


@dataclass
class Window:
    """A maintenance window: one-off (start/end) or recurring daily hours in a time zone."""

    name: str
    regions: tuple[str, ...] = ()
    points: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    daily: tuple[time, time] | None = None
    weekdays: tuple[int, ...] = ()  # 0 = Monday; empty = every day (of the window's start)
    start: datetime | None = None
    end: datetime | None = None


@dataclass
class AlertsConfig:
    rules: dict[str, RuleConfig]
    inhibit: list[tuple[str, tuple[str, ...]]]
    maintenance: list[Window]
    notifiers: list[NotifierConfig]
    tick_s: float = 10.0  # the timer: silence, for-durations, windows ending
    lease_s: float = 120.0  # a claimed notification is re-sent if its sender died without finishing
    enabled: bool = True


_WEEKDAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


def _mapping(node, where: str, allowed: set[str]) -> dict:
    if node is None:
        return {}
    if not isinstance(node, dict):
        raise AlertConfigError(f"alerts.{where}: expected a mapping")
    unknown = sorted(set(node) - allowed)
    if unknown:
        raise AlertConfigError(f"alerts.{where}: unknown key(s) {', '.join(unknown)}")
    return node


def _strings(node, where: str) -> tuple[str, ...]:
    if node is None:
        return ()
    if isinstance(node, str):
        node = [node]
    if not isinstance(node, list) or not all(isinstance(x, (str, int)) for x in node):
        raise AlertConfigError(f"alerts.{where}: expected a list of strings")
    return tuple(str(x) for x in node)


def _int(node, where: str, lo: int = 1) -> int:
    if isinstance(node, bool) or not isinstance(node, int) or node < lo:
        raise AlertConfigError(f"alerts.{where}: expected an integer >= {lo}")
    return node


def parse(section) -> AlertsConfig:
    top = _mapping(section, "", {"enabled", "tick", "lease", "rules", "inhibit", "maintenance", "notifiers"})
    rules = {rid: RuleConfig(**{**vars(rc), "params": dict(rc.params)}) for rid, rc in DEFAULT_RULES.items()}
    for rid, node in _mapping(top.get("rules"), "rules", set(DEFAULT_RULES)).items():
        rc = rules[rid]
        node = _mapping(node, f"rules.{rid}", {"enabled", "severity", "failure_threshold",
                                               "success_threshold", "for", *rc.params})
        if "enabled" in node:
            rc.enabled = bool(node["enabled"])
        if "severity" in node:
            if node["severity"] not in SEVERITIES:
                raise AlertConfigError(f"alerts.rules.{rid}.severity: one of {', '.join(SEVERITIES)}")
            rc.severity = node["severity"]
        for key in ("failure_threshold", "success_threshold"):
            if key in node:
                setattr(rc, key, _int(node[key], f"rules.{rid}.{key}"))
        if "for" in node:
            rc.for_s = duration(node["for"], f"rules.{rid}.for")
        for key in rc.params:
            if key in node:
                rc.params[key] = _param(node[key], f"rules.{rid}.{key}")
    inhibit = list(DEFAULT_INHIBIT)
    if "inhibit" in top:
        inhibit = []
        for i, node in enumerate(top["inhibit"] or []):
            node = _mapping(node, f"inhibit[{i}]", {"source", "targets"})
            source = str(node.get("source", ""))
            targets = _strings(node.get("targets"), f"inhibit[{i}].targets")
            for rid in (source, *targets):
                if rid != "*" and rid not in DEFAULT_RULES:
                    raise AlertConfigError(f"alerts.inhibit[{i}]: unknown rule '{rid}'")
            inhibit.append((source, targets))
    windows = [_window(node, i) for i, node in enumerate(top.get("maintenance") or [])]
    notifiers = []
    for i, node in enumerate(top.get("notifiers") or []):
        nc = _notifier(node, i)
        if nc.name in {n.name for n in notifiers}:
            raise AlertConfigError(f"alerts.notifiers[{i}].name: '{nc.name}' is used twice")
        build_notifier(nc).validate()  # a bad URL or missing secret is a config error at start
        notifiers.append(nc)
    return AlertsConfig(rules=rules, inhibit=inhibit, maintenance=windows, notifiers=notifiers,
                        tick_s=duration(top.get("tick", 10), "tick"), lease_s=duration(top.get("lease", 120), "lease"),
                        enabled=bool(top.get("enabled", True)))


def _param(value, where: str) -> float:
    if isinstance(value, bool):
        raise AlertConfigError(f"alerts.{where}: expected a number")
    if isinstance(value, (int, float)):
        return float(value)
    return duration(value, where)


def _clock(text: str, where: str) -> time:
    match = re.match(r"^(\d{1,2}):(\d{2})$", text.strip())
    if not match or int(match.group(1)) > 24 or int(match.group(2)) > 59:
        raise AlertConfigError(f"alerts.{where}: '{text}' is not HH:MM")
    hour, minute = int(match.group(1)), int(match.group(2))
    return time(0, 0) if hour == 24 else time(hour, minute)


def _window(node, i: int) -> Window:
    where = f"maintenance[{i}]"
    node = _mapping(node, where, {"name", "regions", "points", "rules", "timezone", "daily", "weekdays",
                                  "start", "end"})
    try:
        tz = ZoneInfo(str(node.get("timezone", "Asia/Shanghai")))
    except (ZoneInfoNotFoundError, ValueError):
        raise AlertConfigError(f"alerts.{where}.timezone: unknown time zone") from None
    w = Window(name=str(node.get("name", f"window {i + 1}")), regions=_strings(node.get("regions"), where + ".regions"),
               points=_strings(node.get("points"), where + ".points"), rules=_strings(node.get("rules"), where + ".rules"),
               tz=tz)
    if "daily" in node:
        parts = str(node["daily"]).split("-")
        if len(parts) != 2:
            raise AlertConfigError(f"alerts.{where}.daily: expected 'HH:MM-HH:MM', e.g. 18:00-08:00")
        w.daily = (_clock(parts[0], where + ".daily"), _clock(parts[1], where + ".daily"))
        days = []
        for d in _strings(node.get("weekdays"), where + ".weekdays"):
            if d.lower()[:3] not in _WEEKDAYS:
                raise AlertConfigError(f"alerts.{where}.weekdays: '{d}' is not a weekday (mon…sun)")
            days.append(_WEEKDAYS[d.lower()[:3]])
        w.weekdays = tuple(days)
    elif "start" in node and "end" in node:
        w.start, w.end = _instant(node["start"], tz, where + ".start"), _instant(node["end"], tz, where + ".end")
        if w.end <= w.start:
            raise AlertConfigError(f"alerts.{where}: end must be after start")
    else:
        raise AlertConfigError(f"alerts.{where}: give either daily: 'HH:MM-HH:MM' or start and end")
    return w


def _instant(value, tz: ZoneInfo, where: str) -> datetime:
    if isinstance(value, datetime):
        ts = value
    else:
        try:
            ts = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise AlertConfigError(f"alerts.{where}: '{value}' is not a date-time") from None
    return (ts if ts.tzinfo else ts.replace(tzinfo=tz)).astimezone(timezone.utc)


NOTIFIER_COMMON = {"name", "type", "regions", "severities", "send_resolved", "timeout", "max_attempts",
                   "backoff", "backoff_max"}


def _notifier(node, i: int) -> NotifierConfig:
    where = f"notifiers[{i}]"
    if not isinstance(node, dict) or "type" not in node or "name" not in node:
        raise AlertConfigError(f"alerts.{where}: needs at least name and type")
    severities = _strings(node.get("severities"), where + ".severities")
    if any(s not in SEVERITIES for s in severities):
        raise AlertConfigError(f"alerts.{where}.severities: each one of {', '.join(SEVERITIES)}")
    return NotifierConfig(
        name=str(node["name"]), type=str(node["type"]),
        options={k: v for k, v in node.items() if k not in NOTIFIER_COMMON},
        regions=_strings(node.get("regions"), where + ".regions"), severities=severities,
        send_resolved=bool(node.get("send_resolved", True)),
        timeout_s=duration(node.get("timeout", 10), where + ".timeout"),
        max_attempts=_int(node.get("max_attempts", 8), where + ".max_attempts"),
        backoff_s=duration(node.get("backoff", 2), where + ".backoff"),
        backoff_max_s=duration(node.get("backoff_max", 600), where + ".backoff_max"))
