"""The results the collector adds to each report, as ordinary result rows beside the agent's own.

Scoring and alerts read them like any other check:
- ``agent.clock_skew``: the agent's clock (the report's ``sent_at``) against the collector's receive time.
  A wrong clock is flagged, never a reason to refuse a report.
- ``identity.matches_enrolment`` (人机信息相符): the reported host fingerprint against the one pinned when
  the agent enrolled; error when the report leaves a pinned part empty (not seen is not a match). Only
  where a fingerprint is pinned; an agent without one has nothing to match.
- ``agent.policy`` (代理策略): the report's ``policy_digest`` against the digests issued to its point
  (collector/store/policies.py): ok for the one in force (or the one it replaced, received within ``grace_s``
  of the change — by the collector's receive time, never the agent's collected_at), warn for an older one, fail for a digest never issued to this
  point, error for none while the point has a policy. Only where the point has, or had, a policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from agent.vocabulary import AGENT_CLOCK_SKEW, AGENT_POLICY, ERROR, FAIL, IDENTITY_MATCHES_ENROLMENT, OK, WARN
from agent.wire import Fingerprint, Report, rfc3339
from collector.store.trust import COLLECTOR_SOURCE

SKEW_WARN_S = 300.0  # |agent clock - collector clock| beyond this is flagged
POLICY_GRACE_S = 900.0  # the alert rule policy_mismatch's ``grace`` (collector/alerts/config.py)

# As the agent's identity.fingerprint: one factor cannot tell this machine from a clone or a replacement.
MIN_PINNED_PARTS = 2
_PART_CN = {"machine_id": "机器标识", "serial": "主板/BIOS 序列号", "macs": "网卡 MAC 地址"}


@dataclass(frozen=True)
class Derived:
    """What the collector concluded about one report: result rows, and the two facts point state keeps."""

    rows: list[dict]
    clock_skew_s: float
    fingerprint_mismatch: bool | None  # None: no fingerprint pinned, or a pinned part not reported: not known


def fingerprint_matches(pinned: dict | None, seen: Fingerprint) -> tuple[bool, list[str], list[str]]:
    """Compare a reported fingerprint with the pinned one: (matches, differing parts, parts not reported).

    machine_id and serial must be equal where both are known; MAC lists must share at least one address
    (a USB adapter plugged in adds one, a changed board replaces them all). A part pinned at enrolment that
    the report leaves empty was not seen: it matches nothing (the caller reports it as an error), or a
    replaced PC could pass by sending less.
    """
    if not pinned:
        return True, [], []
    diffs, unseen = [], []
    for name in ("machine_id", "serial"):
        a, b = (pinned.get(name) or "").strip().lower(), (getattr(seen, name) or "").strip().lower()
        if a and b and a != b:
            diffs.append(name)
        elif a and not b:
            unseen.append(name)
    macs_a = {x.lower().replace("-", ":") for x in pinned.get("macs") or []}
    macs_b = {x.lower().replace("-", ":") for x in seen.macs or []}
    if macs_a and macs_b and not macs_a & macs_b:
        diffs.append("macs")
    elif macs_a and not macs_b:
        unseen.append("macs")
    return not diffs and not unseen, diffs, unseen


def _pinned_parts(pinned: dict | None) -> list[str]:
    return [name for name in ("machine_id", "serial", "macs") if (pinned or {}).get(name)]


def identity_row(pinned: dict | None, seen: Fingerprint) -> tuple[dict, bool | None]:
    """The ``identity.matches_enrolment`` row and the point's mismatch flag (None: not known this time)."""
    _, diffs, unseen = fingerprint_matches(pinned, seen)
    if diffs:
        status, mismatch = FAIL, True
        message = f"终端标识与注册时不一致（{'、'.join(_PART_CN[d] for d in diffs)}已变化），疑似更换终端"
    elif len(_pinned_parts(pinned)) < MIN_PINNED_PARTS:
        status, mismatch = ERROR, None
        known = "、".join(_PART_CN[p] for p in _pinned_parts(pinned)) or "无"
        message = (f"注册时登记的终端标识不足两项（{known}），无法可靠核对人机信息"
                   "（请在能读取硬件标识的情况下重新注册代理）")
    elif unseen:
        status, mismatch = ERROR, None
        message = (f"本次上报缺少注册时登记的{'、'.join(_PART_CN[d] for d in unseen)}，无法核对人机信息"
                   "（请检查代理能否读取本机硬件标识）")
    else:
        status, mismatch, message = OK, False, "终端标识与注册时一致（人机信息相符）"
    row = {"check": IDENTITY_MATCHES_ENROLMENT, "target": "enrolment", "status": status, "value": None,
           "unit": None, "details": {"source": COLLECTOR_SOURCE, "differs": diffs, "not_reported": unseen},
           "message": message}
    return row, mismatch


def policy_row(reported: str | None, issued: list, at: datetime, grace_s: float = POLICY_GRACE_S,
               received_at: datetime | None = None) -> dict | None:
    """The ``agent.policy`` result of a report collected at ``at`` and received at ``received_at`` (default
    ``at``); ``issued``: the point's issued digests (objects with digest, issued_at, superseded_at), any order.
    None when the point never had a policy, or had none yet when the report was collected and it names none.
    The grace after a change is judged by the receive time, the collector's own clock: ``at`` comes from the
    agent, which could backdate it to keep a superseded policy "within the grace" for ever."""
    if reported is None and issued and at < min(i.issued_at for i in issued):
        # Checked before the point had any policy (an agent's backlog, or its local file up to the first
        # issue): no policy existed to name, so no verdict, as for a point that never had one.
        return None
    if not issued:
        if reported is None:
            return None
        status, message = FAIL, "上报的策略摘要从未由采集端下发给该服务点（该点尚无策略），检查结果不能作为依据"
    else:
        current = next((i for i in issued if i.superseded_at is None), None)
        match = next((i for i in issued if i.digest == reported), None)
        if reported is None:
            status, message = ERROR, "该服务点有采集端下发的检查策略，但上报未注明所用策略（代理未取到策略或版本过旧）"
        elif match is None:
            status, message = FAIL, "上报的策略摘要从未由采集端下发给该服务点，检查所依据的策略不可信"
        elif match is current or match.superseded_at is None:
            status, message = OK, f"按采集端当前下发的策略检查（{reported[:19]}…）"
        elif ((received_at or at) - match.superseded_at).total_seconds() <= grace_s:
            status, message = OK, (f"按上一版策略检查，新策略下发于 {rfc3339(match.superseded_at)}，"
                                   f"仍在 {grace_s / 60:.0f} 分钟宽限期内")
        else:
            status, message = WARN, (f"仍按旧策略检查：该策略已于 {rfc3339(match.superseded_at)} 被替换，超过 "
                                     f"{grace_s / 60:.0f} 分钟宽限期，代理未取到新策略")
    current_digest = next((i.digest for i in issued if i.superseded_at is None), None)
    return {"check": AGENT_POLICY, "target": "policy", "status": status, "value": None, "unit": None,
            "message": message, "details": {"source": COLLECTOR_SOURCE, "reported": reported, "current": current_digest,
                                            "grace_s": grace_s}}


def derive(report: Report, received_at: datetime, pinned: dict | None, has_pin: bool,
           skew_warn_s: float = SKEW_WARN_S, issued: list | None = None,
           grace_s: float = POLICY_GRACE_S) -> Derived:
    skew = round((report.sent_at - received_at).total_seconds(), 3)
    bad = abs(skew) > skew_warn_s
    rows = [{"check": AGENT_CLOCK_SKEW, "target": "clock", "status": WARN if bad else OK, "value": skew,
             "unit": "s", "details": {"source": COLLECTOR_SOURCE, "threshold_s": skew_warn_s},
             "message": (f"终端时钟与采集端相差 {skew:+.0f} 秒，超过 {skew_warn_s / 60:.0f} 分钟，请校准时间"
                         if bad else f"终端时钟偏差 {skew:+.1f} 秒，正常")}]
    mismatch = None
    if has_pin:
        row, mismatch = identity_row(pinned, report.host.fingerprint)
        rows.append(row)
    policy = policy_row(getattr(report, "policy_digest", None), issued or [], min(report.collected_at, received_at),
                        grace_s, received_at)
    if policy is not None:
        rows.append(policy)
    return Derived(rows, skew, mismatch)
