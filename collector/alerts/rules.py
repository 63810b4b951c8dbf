"""The default rules: pure functions from a point's latest state (or one result) to the faults it shows.

Each rule yields :class:`Hit`s keyed by (rule, check, target). A hit's ``observed`` is the receive time of
the data it was judged on, so the engine counts a new observation only when that data is newer than what
it last counted (a device checked every 5 minutes is not counted again on each 60-second network report).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from agent.vocabulary import (
    AGENT_CLOCK_SKEW,
    AGENT_POLICY,
    AGENT_REPORT,
    IDENTITY_FINGERPRINT,
    IDENTITY_MATCHES_ENROLMENT,
    ISOLATION_INTERNET,
    NET_CORE_ICMP,
    NET_CORE_TCP,
    USAGE_LISTENING_PORTS,
    USAGE_PROCESSES,
    USAGE_REMOVABLE_MEDIA,
    device_check,
)
from collector.alerts.config import RuleConfig

TITLES = {
    "point_silent": "服务点失联",
    "core_unreachable": "核心网络不通",
    "core_degraded": "核心网络质量下降",
    "internet_reachable": "专网违规：可访问互联网",
    "forbidden_software": "专用违规：发现禁用软件",
    "identity_changed": "专机违规：终端标识与注册不符",
    "removable_media": "专用违规：接入未登记的移动存储",
    "unexpected_port": "专用违规：白名单外的监听端口",
    "device_missing": "设备离线或故障",
    "printer_supply_low": "打印机耗材不足",
    "clock_skew": "终端时钟偏差过大",
    "policy_mismatch": "检查策略不符：上报所用策略非采集端下发",
    # Raised by the collector when it pauses an agent release whose rollout stage failed too often
    # (collector/releases/rollout.py), not by a rule over one point's state: no alerts.rules entry.
    "rollout_paused": "代理升级已自动暂停：该阶段升级失败过多",
}
PRINTER_CHECK = device_check("printer")
CORE_CHECKS = (NET_CORE_ICMP, NET_CORE_TCP)
# Simple "this check failed" rules: rule → check id.
FAIL_RULES = {
    "internet_reachable": ISOLATION_INTERNET,
    "forbidden_software": USAGE_PROCESSES,
    "removable_media": USAGE_REMOVABLE_MEDIA,
    "unexpected_port": USAGE_LISTENING_PORTS,
    "policy_mismatch": AGENT_POLICY,
}
IDENTITY_CHECKS = (IDENTITY_MATCHES_ENROLMENT, IDENTITY_FINGERPRINT)


@dataclass(frozen=True)
class PointView:
    code: str
    name: str
    region_path: str
    report_interval_s: int
    last_received_at: datetime | None
    clock_skew_s: float | None
    fingerprint_mismatch: bool


@dataclass(frozen=True)
class Latest:
    check: str
    target: str
    status: str
    value: float | None
    message: str
    details: dict
    received_at: datetime


@dataclass(frozen=True)
class Hit:
    rule: str
    check: str
    target: str
    summary: str  # Chinese, what exactly is wrong
    observed: datetime
    value: float | None = None
    since: datetime | None = None  # when the fault began, if earlier than the observation (silence)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.rule, self.check, self.target)


def silent_hit(point: PointView, rc: RuleConfig, now: datetime, baseline: datetime | None) -> Hit | None:
    """No report for N intervals, judged by the collector's receive time (never the agent's clock).
    A point that never reported is not silent (nothing was installed yet); a maintenance window's end
    (``baseline``) restarts the count."""
    if point.last_received_at is None:
        return None
    since = max(point.last_received_at, baseline) if baseline else point.last_received_at
    limit = rc.params["intervals"] * point.report_interval_s
    quiet = (now - since).total_seconds()
    if quiet <= limit:
        return None
    minutes = int((now - point.last_received_at).total_seconds() // 60)
    return Hit("point_silent", AGENT_REPORT, "终端", f"已 {minutes} 分钟没有收到该服务点的上报"
               f"（超过 {rc.params['intervals']:g} 个上报周期），终端可能关机、断网或程序停止", now,
               since=point.last_received_at)


# The rules a single result can raise (sample_hits): a clean result of the same check and target clears them.
RESULT_RULES = frozenset({"core_unreachable", "core_degraded", "identity_changed", "device_missing",
                          "printer_supply_low", *FAIL_RULES})


def _enabled(rules: dict[str, RuleConfig]):
    def on(rule: str) -> RuleConfig | None:
        rc = rules.get(rule)
        return rc if rc and rc.enabled else None

    return on


def result_hits(point: PointView, latest: Iterable[Latest], rules: dict[str, RuleConfig]) -> list[Hit]:
    """The faults a point shows now: its latest results' and its state's (identity, clock)."""
    hits = sample_hits(latest, rules)
    on = _enabled(rules)
    if point.last_received_at is not None:
        if point.fingerprint_mismatch and on("identity_changed") and not any(
                h.rule == "identity_changed" for h in hits):
            hits.append(Hit("identity_changed", IDENTITY_MATCHES_ENROLMENT, "enrolment",
                            "终端硬件标识与注册时不一致（人机信息不相符），疑似更换了终端", point.last_received_at))
        rc = on("clock_skew")
        if rc and point.clock_skew_s is not None and abs(point.clock_skew_s) > rc.params["seconds"]:
            hits.append(Hit("clock_skew", AGENT_CLOCK_SKEW, "时钟",
                            f"终端时钟与采集端相差 {point.clock_skew_s:+.0f} 秒（允许 ±{rc.params['seconds']:g} 秒），"
                            "请校准终端时间", point.last_received_at, point.clock_skew_s))
    return hits


def sample_hits(results: Iterable[Latest], rules: dict[str, RuleConfig]) -> list[Hit]:
    """The faults these results show, each judged alone (a latest result, or one replayed from history)."""
    hits: list[Hit] = []
    on = _enabled(rules)
    for r in results:
        if r.check in CORE_CHECKS:
            if r.status == "fail" and on("core_unreachable"):
                hits.append(Hit("core_unreachable", r.check, r.target, r.message, r.received_at, r.value))
            elif r.status != "fail" and (rc := on("core_degraded")) and _degraded(r, rc):
                hits.append(Hit("core_degraded", r.check, r.target, r.message, r.received_at, r.value))
        elif r.check in IDENTITY_CHECKS and r.status == "fail" and on("identity_changed"):
            hits.append(Hit("identity_changed", r.check, r.target, r.message, r.received_at))
        elif r.check.startswith("device."):
            if r.status == "fail" and on("device_missing"):
                hits.append(Hit("device_missing", r.check, r.target, r.message, r.received_at))
            elif r.check == PRINTER_CHECK and (rc := on("printer_supply_low")) and _supply_low(r, rc):
                hits.append(Hit("printer_supply_low", r.check, r.target, r.message, r.received_at))
        else:
            for rule, check in FAIL_RULES.items():
                if r.check == check and r.status == "fail" and on(rule):
                    hits.append(Hit(rule, r.check, r.target, r.message, r.received_at, r.value))
    return hits


def _degraded(r: Latest, rc: RuleConfig) -> bool:
    if r.status == "warn":
        return True
    loss = r.details.get("loss_ratio") if isinstance(r.details, dict) else None
    if isinstance(loss, (int, float)) and loss >= rc.params["loss_ratio"]:
        return True
    return r.value is not None and r.value >= rc.params["rtt_s"]


def _supply_low(r: Latest, rc: RuleConfig) -> bool:
    if r.status not in ("warn", "fail"):
        return False
    details = r.details if isinstance(r.details, dict) else {}
    conditions = {str(c) for c in details.get("conditions") or []}
    if conditions & {"low_toner", "no_toner", "low_ink", "supply_low", "marker_supply_missing"}:
        return True
    for s in details.get("supplies") or []:
        ratio = s.get("ratio") if isinstance(s, dict) else None
        # Printer-MIB sentinels (-1/-2/-3) never mean "empty"; only a real ratio counts.
        if isinstance(ratio, (int, float)) and 0 <= ratio <= rc.params["ratio"]:
            return True
    return False


def value_thresholds(rules: dict[str, RuleConfig]) -> dict[str, tuple[float, ...]]:
    """{check: values} the enabled rules judge a result's own value against (core_degraded's round trip):
    ingest writes a results row when a value crosses one (collector/ingest/changes.py), however small the
    move, so the replay and the latest state see the crossing. Thresholds in the details (loss ratio, printer
    supplies) need none: their moves are steps well beyond any deadband."""
    rc = _enabled(rules)("core_degraded")
    return {check: (float(rc.params["rtt_s"]),) for check in CORE_CHECKS} if rc else {}
