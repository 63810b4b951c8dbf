"""The rollout of agent releases: who runs what, who failed and why, per stage; the automatic pause.

A *stage* is the policy level that sets ``agent.version`` for a point: a region node ("/gansu/lanzhou") or
the point itself ("point:620102001001"), as ``policy show`` names it. A rollout goes stage by stage (a few
villages' node first, then the county's), so the failed share is judged per stage: of the points whose
effective policy names version V at that level, how many have a latest ``agent.upgrade`` result that is
``fail`` for target V. When that share exceeds ``agent_releases.pause_failed_share`` (with at least one
failure), the collector pauses V itself: agents are then answered 409 and do not start it, the alert
``rollout_paused`` is raised and the pause is audited. It is looked at when a report carrying such a failure
is stored (:func:`evaluate`, from the ingest pipeline), so a fleet that upgrades fine costs nothing.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict

from agent.vocabulary import AGENT_UPGRADE, FAIL
from collector.policy.service import effective
from collector.registry.regions import normalize_path
from collector.store import policies
from collector.store import releases as rows
from collector.store.audit import SYSTEM

log = logging.getLogger("pointwatch.releases")
RULE = "rollout_paused"
POINT_LEVEL = "point:"


def target_of(details: dict) -> str | None:
    target = details.get("target") if isinstance(details, dict) else None
    return target if isinstance(target, str) and target else None


def reason_of(details: dict) -> str:
    reason = details.get("reason") if isinstance(details, dict) else None
    return reason if isinstance(reason, str) and reason else "unknown"


def _ordered_version(text: str):
    from agent.versions import parse_version

    try:
        return (0, parse_version(text), text)
    except ValueError:
        return (1, (), text)


def staged_versions(store, scope: str = "/") -> dict[str, tuple[str, str]]:
    """{point code: (version its effective policy names, the stage that names it)} for points in scope."""

    def look(view: policies.View):
        out = {}
        for point in view.points(scope):
            eff = effective(view, point)
            version = ((eff.policy.get("agent") or {}).get("version") if eff is not None else None)
            if isinstance(version, str):
                out[point.code] = (version, eff.origin.get("agent.version", "?"))
        return out

    return policies.read(store, look)


def stats(store, scope: str = "/") -> dict:
    """The rollout view (``GET /api/v1/agent-releases``, the admin page, ``agent-release list``)."""
    points = rows.running_versions(store, scope)
    running = Counter(v for _, _, v in points if v)
    in_scope = {code for code, _, _ in points}
    failures = {code: details for code, details, _ in rows.latest_results_of(store, AGENT_UPGRADE, FAIL)
                if code in in_scope and target_of(details)}
    staged = staged_versions(store, scope)
    stages: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for code, (version, stage) in staged.items():
        counts = stages[(version, stage)]
        counts[0] += 1
        counts[1] += target_of(failures.get(code, {})) == version
    held: dict[str, dict] = {}
    for r in rows.list_releases(store):
        entry = held.setdefault(r["version"], {"version": r["version"], "platforms": [], "paused_at": r["paused_at"],
                                               "paused_reason": r["paused_reason"]})
        entry["platforms"].append({k: r[k] for k in ("platform", "file", "size", "sha256", "added_at")})
    versions = set(held) | set(running) | {v for v, _ in stages} | {target_of(d) for d in failures.values()}
    out = []
    for version in sorted(versions, key=_ordered_version):
        failed = [d for d in failures.values() if target_of(d) == version]
        entry = held.get(version, {"version": version, "platforms": [], "paused_at": None, "paused_reason": None})
        out.append({**entry, "held": version in held, "running": running.get(version, 0), "failed": len(failed),
                    "reasons": dict(Counter(reason_of(d) for d in failed).most_common()),
                    "failed_points": sorted(c for c, d in failures.items() if target_of(d) == version),
                    "stages": [{"stage": stage, "points": n, "failed": f, "share": round(f / n, 4)}
                               for (v, stage), (n, f) in sorted(stages.items()) if v == version]})
    return {"scope": normalize_path(scope), "releases": out}


def _stage_region(stage: str, point_region: str) -> str:
    return point_region if stage.startswith(POINT_LEVEL) else stage


class RolloutWatch:
    """The ingest pipeline's hook (``ReportPipeline.upgrade_failed``): {point: target} of the failed
    agent.upgrade results it just stored. An agent repeats its failure in every report until the policy names
    another release; only a point's new failure (another target, or its first here) can raise a stage's
    share, so repeats are not judged again (the memory is this process's; another collector or a restart
    judges once more, which changes nothing)."""

    def __init__(self, store, pause_failed_share: float):
        self.store, self.pause_failed_share = store, pause_failed_share
        self._judged: dict[str, str] = {}

    def __call__(self, failing: dict[str, str]) -> list[str]:
        new = {code: target for code, target in failing.items() if self._judged.get(code) != target}
        if not new:
            return []
        paused = evaluate(self.store, sorted(new), self.pause_failed_share)
        self._judged.update(new)
        return paused


def evaluate(store, codes: list[str], pause_failed_share: float) -> list[str]:
    """After reports from ``codes`` carrying an agent.upgrade failure were stored: pause every release whose
    stage (of one of these points) failed beyond the share. Returns the versions paused now.

    Failures an admin already saw when resuming the release (the resume's audit entry lists them) do not
    count again: those agents never retry the same build, and would otherwise undo the resume at once."""
    failing = {code: target_of(d) for code, d, _ in rows.latest_results_of(store, AGENT_UPGRADE, FAIL, codes)
               if target_of(d)}
    if not failing:
        return []
    paused_now, paused = [], rows.paused_versions(store)

    def stage_counts(view: policies.View, code: str, version: str):
        mine = view.points("/", [code])
        eff = effective(view, mine[0]) if mine else None
        if eff is None or (eff.policy.get("agent") or {}).get("version") != version:
            return None  # the policy no longer names that version: a failure of an earlier rollout
        stage = eff.origin.get("agent.version", "?")
        region = _stage_region(stage, mine[0].region_path)
        members = mine if stage.startswith(POINT_LEVEL) else [
            p for p in view.points(region) if (e := effective(view, p)) is not None
            and (e.policy.get("agent") or {}).get("version") == version and e.origin.get("agent.version") == stage]
        return stage, region, [p.code for p in members]

    for code, version in sorted(failing.items()):
        if version in paused or rows.get_any(store, version) is None:
            continue
        seen_at_resume = rows.failed_at_resume(store, version)
        if code in seen_at_resume:
            continue
        found = policies.read(store, lambda view, c=code, v=version: stage_counts(view, c, v))
        if found is None:
            continue
        stage, region, members = found
        failed = sum(1 for c, d, _ in rows.latest_results_of(store, AGENT_UPGRADE, FAIL, members)
                     if target_of(d) == version and c not in seen_at_resume)
        share = failed / len(members) if members else 0.0
        if failed < 1 or share <= pause_failed_share:
            continue
        reason = (f"阶段 {stage} 中 {failed}/{len(members)} 个服务点升级到 {version} 失败（{share:.0%}，"
                  f"超过 {pause_failed_share:.0%}），采集端已自动暂停该版本的发布")
        if rows.pause(store, version, reason, SYSTEM, {"by": "collector", "stage": stage, "failed": failed,
                                                        "points": len(members), "share": round(share, 4),
                                                        "limit": pause_failed_share, "tipped_by": code},
                      alert=_alert(code, region, version, reason, share)):
            log.warning("rollout_paused version=%s stage=%s failed=%d points=%d", version, stage, failed, len(members))
            paused_now.append(version)
        paused.add(version)
    return paused_now


def failed_points(store, version: str) -> list[str]:
    """Points whose latest agent.upgrade result is a failure for ``version`` (what a resume records)."""
    return sorted(c for c, d, _ in rows.latest_results_of(store, AGENT_UPGRADE, FAIL) if target_of(d) == version)


def _alert(code: str, region: str, version: str, summary: str, share: float) -> dict:
    from collector.alerts.engine import fingerprint

    fp = fingerprint(RULE, code, AGENT_UPGRADE, version)
    return {"fingerprint": fp, "open_key": fp, "rule": RULE, "point_code": code, "region_path": normalize_path(region),
            "check": AGENT_UPGRADE, "target": version, "severity": "warning", "state": "firing", "summary": summary,
            "value": share, "fail_streak": 1, "ok_streak": 0}

