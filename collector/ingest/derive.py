"""The results the collector adds to each report, as ordinary result rows beside the agent's own.

Scoring and alerts read them like any other check:
- ``agent.clock_skew``: the agent's clock (the report's ``sent_at``) against the collector's receive time.
  A wrong clock is flagged, never a reason to refuse a report.
- ``identity.matches_enrolment`` (人机信息相符): the reported host fingerprint against the one pinned when
  the agent enrolled. Only where a fingerprint is pinned; an agent without one has nothing to match.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from agent.vocabulary import AGENT_CLOCK_SKEW, FAIL, IDENTITY_MATCHES_ENROLMENT, OK, WARN
from agent.wire import Fingerprint, Report

SKEW_WARN_S = 300.0  # |agent clock - collector clock| beyond this is flagged

_PART_CN = {"machine_id": "机器标识", "serial": "主板/BIOS 序列号", "macs": "网卡 MAC 地址"}


@dataclass(frozen=True)
class Derived:
    """What the collector concluded about one report: result rows, and the two facts point state keeps."""

    rows: list[dict]
    clock_skew_s: float
    fingerprint_mismatch: bool | None  # None: no fingerprint pinned, nothing to say


def fingerprint_matches(pinned: dict | None, seen: Fingerprint) -> tuple[bool, list[str]]:
    """Compare a reported fingerprint with the pinned one; returns (matches, names of differing parts).

    machine_id and serial must be equal where both are known; MAC lists must share at least one address
    (a USB adapter plugged in adds one, a changed board replaces them all).
    """
    if not pinned:
        return True, []
    diffs = []
    for name in ("machine_id", "serial"):
        a, b = (pinned.get(name) or "").strip().lower(), (getattr(seen, name) or "").strip().lower()
        if a and b and a != b:
            diffs.append(name)
    macs_a = {x.lower().replace("-", ":") for x in pinned.get("macs") or []}
    macs_b = {x.lower().replace("-", ":") for x in seen.macs or []}
    if macs_a and macs_b and not macs_a & macs_b:
        diffs.append("macs")
    return not diffs, diffs


def derive(report: Report, received_at: datetime, pinned: dict | None, has_pin: bool,
           skew_warn_s: float = SKEW_WARN_S) -> Derived:
    skew = round((report.sent_at - received_at).total_seconds(), 3)
    bad = abs(skew) > skew_warn_s
    rows = [{"check": AGENT_CLOCK_SKEW, "target": "clock", "status": WARN if bad else OK, "value": skew,
             "unit": "s", "details": {"source": "collector", "threshold_s": skew_warn_s},
             "message": (f"终端时钟与采集端相差 {skew:+.0f} 秒，超过 {skew_warn_s / 60:.0f} 分钟，请校准时间"
                         if bad else f"终端时钟偏差 {skew:+.1f} 秒，正常")}]
    mismatch = None
    if has_pin:
        ok, diffs = fingerprint_matches(pinned, report.host.fingerprint)
        mismatch = not ok
        rows.append({"check": IDENTITY_MATCHES_ENROLMENT, "target": "enrolment", "status": OK if ok else FAIL,
                     "value": None, "unit": None, "details": {"source": "collector", "differs": diffs},
                     "message": "终端标识与注册时一致（人机信息相符）" if ok else
                     f"终端标识与注册时不一致（{'、'.join(_PART_CN[d] for d in diffs)}已变化），疑似更换终端"})
    return Derived(rows, skew, mismatch)
