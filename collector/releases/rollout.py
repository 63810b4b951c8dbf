"""The rollout of agent releases: who runs what, who failed and why, per stage; the automatic pause.

A *stage* is the policy level that sets ``agent.version`` for a point: a region node ("/gansu/lanzhou") or
the point itself ("point:620102001001"), as ``policy show`` names it. A rollout goes stage by stage (a few
villages' node first, then the county's), so failures are judged per stage: of the points whose effective
policy names version V at that level, how many have a latest ``agent.upgrade`` result that is ``fail`` for
target V for a build fault (agent/upgrade/state.py BUILD_FAULTS: the build did not start, or rolled back),
of a build still held. When at least ``agent_releases.pause_min_failed_points`` distinct points did and more
than ``agent_releases.pause_failed_share`` of the stage's points did, the collector pauses V *in that stage*:
its agents are then answered 409 and do not start it, agents of every other stage keep getting it, the alert
``rollout_paused`` is raised (one per version and stage) and the pause is audited with the stage. Each PC
writes its own failure reports, so a few PCs (or one, in a stage of one point) can never stop a rollout, and
a download, disk or signature refusal on a PC (the collector verified the build when it was added) never
counts. It is looked at when a report carrying such a failure is stored (:func:`evaluate`, from the ingest
pipeline), so a fleet that upgrades fine costs nothing. An admin's pause (``agent-release pause``) holds every
stage; ``resume`` lifts it and the stage pauses (or one, with ``--stage``); ``add --replace`` lifts the stage
pauses, which were about the replaced build.
"""

from __future__ import annotations

import logging
from collections import Counter

from agent.upgrade.state import BUILD_FAULTS
from agent.versions import canonical_or_none
from agent.vocabulary import AGENT_UPGRADE, FAIL
from collector.policy.documents import merge
from collector.policy.service import effective
from collector.registry.regions import normalize_path
from collector.store import policies
from collector.store import releases as rows
from collector.store.audit import SYSTEM

log = logging.getLogger("pointwatch.releases")
RULE = "rollout_paused"
POINT_LEVEL = "point:"


def target_of(details: dict) -> str | None:
    """The version a failure is of, in canonical form (an older agent reported the policy's text as written)."""
    target = details.get("target") if isinstance(details, dict) else None
    if not isinstance(target, str) or not target:
        return None
    return canonical_or_none(target) or target


def reason_of(details: dict) -> str:
    reason = details.get("reason") if isinstance(details, dict) else None
    return reason if isinstance(reason, str) and reason else "unknown"


def build_of(details: dict) -> str:
    """The sha256 of the build that failed ("" from an agent that does not say: before issue 23's fixes)."""
    sha = details.get("sha256") if isinstance(details, dict) else None
    return sha if isinstance(sha, str) else ""


def policy_version(policy: dict | None) -> str | None:
    """``agent.version`` of an effective policy, canonical ("0.2" names the release "0.2.0")."""
    agent = (policy or {}).get("agent") if isinstance(policy, dict) else None
    version = agent.get("version") if isinstance(agent, dict) else None
    return (canonical_or_none(version) or version) if isinstance(version, str) else None


def _ordered_version(text: str):
    from agent.versions import parse_version

    try:
        return (0, parse_version(text), text)
    except ValueError:
        return (1, (), text)


class Stages:
    """Which (version, stage) each point within a scope is in, and how many points each holds, read by region:
    a point without a document of its own takes ``agent.*`` from its region's documents alone (registered
    devices only add to ``devices``), so each region's documents are merged once, not each point's."""

    def __init__(self, view: policies.View, scope: str):
        self.view = view
        self._regions: dict[str, tuple[str, str] | None] = {}
        self._chains: dict[tuple[str, ...], tuple[str, str] | None] = {}
        counted, alone = view.placements(scope)
        self.own = {p.code: self._named(p.region_path, p.code) for p in alone}
        self.counts: Counter = Counter()
        for region, n in counted.items():
            if (named := self.of_region(region)) is not None:
                self.counts[named] += n
        for named in self.own.values():
            if named is not None:
                self.counts[named] += 1

    def _named(self, region: str, code: str | None) -> tuple[str, str] | None:
        layers = self.view.layers(region, code)
        chain = tuple(level for level, _ in layers)  # within one view a level names one document
        if chain not in self._chains:
            eff = merge(layers) if layers else None  # ``effective`` but for the devices, which add nothing here
            version = policy_version(eff.policy) if eff is not None else None
            self._chains[chain] = (version, eff.origin.get("agent.version", "?")) if version is not None else None
        return self._chains[chain]

    def of_region(self, region: str) -> tuple[str, str] | None:
        if region not in self._regions:
            self._regions[region] = self._named(region, None)
        return self._regions[region]

    def of(self, code: str, region: str) -> tuple[str, str] | None:
        """(version, stage) of a point within the scope (None: its policy names no version)."""
        return self.own[code] if code in self.own else self.of_region(region)


class Seen:
    """The failures an admin already saw when resuming (or replacing) a version: {point: builds}; a point
    recorded without its builds (an entry written before builds were) stands for every build."""

    def __init__(self, recorded: dict[str, set[str] | None]):
        self.recorded = recorded

    def __contains__(self, failure: tuple[str, str]) -> bool:
        code, build = failure
        if code not in self.recorded:
            return False
        builds = self.recorded[code]
        # A failure naming no build is seen with any of the point's: else, after a resume, the same point could
        # count again by leaving its build out.
        return builds is None or not build or build in builds


def counts_against(details: dict, code: str, version: str, held: set[str], seen: Seen) -> bool:
    """A failure that may pause ``version``'s stage: of the version, for a build fault (a reason only the
    build itself explains: BUILD_FAULTS), of a build still held (a replaced build's failures are not the new
    build's), and not already seen by the admin who resumed it."""
    build = build_of(details)
    return (target_of(details) == version and reason_of(details) in BUILD_FAULTS
            and (not build or build in held) and (code, build) not in seen)


def stats(store, scope: str = "/") -> dict:
    """The rollout view (``GET /api/v1/agent-releases``, the admin page, ``agent-release list``)."""
    running: Counter = Counter()
    for text, n in rows.version_counts(store, scope):  # a few texts: each made canonical once
        running[canonical_or_none(text) or text] += n
    failing = [(code, region, details) for code, region, details
               in rows.latest_results_within(store, AGENT_UPGRADE, FAIL, scope) if target_of(details)]
    failures = {code: details for code, _, details in failing}
    regions = {code: region for code, region, _ in failing}
    staged = policies.read(store, lambda view: Stages(view, scope))
    pauses = rows.stage_pauses(store)
    held: dict[str, dict] = {}
    for r in rows.list_releases(store):
        entry = held.setdefault(r["version"], {"version": r["version"], "platforms": [], "paused_at": r["paused_at"],
                                               "paused_reason": r["paused_reason"]})
        entry["platforms"].append({k: r[k] for k in ("platform", "file", "size", "sha256", "added_at")})
    seen = {v: Seen(rows.failed_at_resume(store, v)) for v in held}
    stages: dict[tuple[str, str], list[int]] = {key: [n, 0, 0] for key, n in staged.counts.items()}
    for code, details in failures.items():  # a point without a failure adds to its stage's count only
        named = staged.of(code, regions[code])
        if named is None:
            continue
        version, _ = named
        counts = stages[named]
        counts[1] += target_of(details) == version
        counts[2] += version in held and counts_against(
            details, code, version, {p["sha256"] for p in held[version]["platforms"]}, seen[version])
    versions = set(held) | set(running) | {v for v, _ in stages} | {target_of(d) for d in failures.values()}
    out = []
    for version in sorted(versions, key=_ordered_version):
        failed = [d for d in failures.values() if target_of(d) == version]
        entry = held.get(version, {"version": version, "platforms": [], "paused_at": None, "paused_reason": None})
        stage_rows = [{"stage": stage, "points": n, "failed": f, "share": round(f / n, 4), "build_faults": b,
                       **pauses.get((v, stage), {"paused_at": None, "paused_reason": None})}
                      for (v, stage), (n, f, b) in sorted(stages.items()) if v == version]
        listed = {r["stage"] for r in stage_rows}
        stage_rows += [{"stage": stage, "points": 0, "failed": 0, "share": 0.0, "build_faults": 0, **p}
                       for (v, stage), p in sorted(pauses.items()) if v == version and stage not in listed
                       and normalize_path(scope) == "/"]  # a paused stage no policy names any more
        out.append({**entry, "held": version in held, "running": running.get(version, 0), "failed": len(failed),
                    "reasons": dict(Counter(reason_of(d) for d in failed).most_common()),
                    "failed_points": sorted(c for c, d in failures.items() if target_of(d) == version),
                    "stages": stage_rows,
                    "paused_stages": sorted(st for (v, st) in pauses if v == version)})
    return {"scope": normalize_path(scope), "releases": out}


def _stage_region(stage: str, point_region: str) -> str:
    return point_region if stage.startswith(POINT_LEVEL) else stage


class RolloutWatch:
    """The ingest pipeline's hook (``ReportPipeline.upgrade_failed``): {point: (target, build, reason)} of
    the failed agent.upgrade results it just stored. An agent repeats its failure in every report until the
    policy names another release; only a point's new failure (another target, build or reason, or its first
    here) can raise a stage's count, so repeats are not judged again (the memory is this process's; another
    collector or a restart judges once more, which changes nothing)."""

    def __init__(self, store, pause_failed_share: float, pause_min_failed_points: int):
        self.store, self.pause_failed_share = store, pause_failed_share
        self.pause_min_failed_points = pause_min_failed_points
        self._judged: dict[str, tuple] = {}

    def __call__(self, failing: dict[str, tuple]) -> list[tuple[str, str]]:
        new = {code: what for code, what in failing.items() if self._judged.get(code) != what}
        if not new:
            return []
        paused = evaluate(self.store, sorted(new), self.pause_failed_share, self.pause_min_failed_points)
        self._judged.update(new)
        return paused


def evaluate(store, codes: list[str], pause_failed_share: float, pause_min_failed_points: int) -> list[tuple[str, str]]:
    """After reports from ``codes`` carrying an agent.upgrade failure were stored: pause a version in the
    stage (of one of these points) where at least ``pause_min_failed_points`` distinct points failed it for a
    build fault and more than ``pause_failed_share`` of the stage's points did. Returns the (version, stage)
    paused now. The pause holds that stage only: a judged PC writes its own failure reports, and what a few
    PCs say must never stop the rollout of every other stage (nor, below the minimum, of their own).

    Failures an admin already saw when resuming the release (the resume's audit entry lists them) do not
    count again: those agents never retry the same build, and would otherwise undo the resume at once."""
    failing = {code: (target_of(d), d) for code, d, _ in rows.latest_results_of(store, AGENT_UPGRADE, FAIL, codes)
               if target_of(d) and reason_of(d) in BUILD_FAULTS}
    if not failing:
        return []
    paused_now = []
    pauses = set(rows.stage_pauses(store))
    releases: dict[str, tuple[set[str], Seen]] = {}
    judged: set[tuple[str, str]] = set()  # a stage's count is the stage's, whichever of its points failed

    def stage_of(view: policies.View, code: str, version: str):
        """(stage, its region, how many points it holds, its points' failures), or None: nothing new to judge."""
        mine = view.points("/", [code])
        eff = effective(view, mine[0]) if mine else None
        if eff is None or policy_version(eff.policy) != version:
            return None  # the policy no longer names that version: a failure of an earlier rollout
        stage = eff.origin.get("agent.version", "?")
        if (version, stage) in pauses or (version, stage) in judged:
            return None
        region = _stage_region(stage, mine[0].region_path)
        staged = Stages(view, region)
        # The stage's failures read by region, not by a list of its points' codes: a province's stage holds
        # more points than one statement may carry parameters.
        failed = [(c, d) for c, r, d in rows.latest_results_within(store, AGENT_UPGRADE, FAIL, region)
                  if staged.of(c, r) == (version, stage)]
        return stage, region, staged.counts[(version, stage)], failed

    for code, (version, details) in sorted(failing.items()):
        if version not in releases:
            releases[version] = (rows.held_sha256s(store, version), Seen(rows.failed_at_resume(store, version)))
        held, seen = releases[version]
        if not held or not counts_against(details, code, version, held, seen):
            continue
        found = policies.read(store, lambda view, c=code, v=version: stage_of(view, c, v))
        if found is None:
            continue
        stage, region, points, failures = found
        judged.add((version, stage))
        failed = sum(1 for c, d in failures if counts_against(d, c, version, held, seen))
        share = failed / points if points else 0.0
        if failed < pause_min_failed_points or share <= pause_failed_share:
            continue
        reason = (f"阶段 {stage} 中 {failed}/{points} 个服务点升级到 {version} 失败（新版本无法启动或已回退，"
                  f"{share:.0%}，超过 {pause_failed_share:.0%}），采集端已自动暂停该版本在此阶段的发布；"
                  "其他阶段不受影响")
        details = {"by": "collector", "failed": failed, "points": points, "share": round(share, 4),
                   "limit": pause_failed_share, "min_failed_points": pause_min_failed_points, "tipped_by": code}
        if rows.pause_stage(store, version, stage, reason, SYSTEM, details,
                            _alert(code, region, version, stage, reason, share), normalize_path(region)):
            log.warning("rollout_paused version=%s stage=%s failed=%d points=%d", version, stage, failed, points)
            paused_now.append((version, stage))
        pauses.add((version, stage))
    return paused_now


def failed_builds(store, version: str) -> list[list[str]]:
    """[point, build] of the points whose latest agent.upgrade result is a failure for ``version`` (what a
    resume or a replacement records; build "" from an agent that does not say)."""
    return sorted([c, build_of(d)] for c, d, _ in rows.latest_results_of(store, AGENT_UPGRADE, FAIL)
                  if target_of(d) == version)


def _alert(code: str, region: str, version: str, stage: str, summary: str, share: float) -> dict:
    fp = rows.stage_alert_key(version, stage)
    return {"fingerprint": fp, "open_key": fp, "rule": RULE, "point_code": code, "region_path": normalize_path(region),
            "check": AGENT_UPGRADE, "target": version, "severity": "warning", "state": "firing", "summary": summary,
            "value": share, "fail_streak": 1, "ok_streak": 0}
