"""Scores of points and regions: the store's results fed to the pure scoring engine (collector/scoring)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from agent.vocabulary import COLLECTOR_CHECK_IDS, OK, SILENCE_INTERVALS_DEFAULT, WARN
from collector.scoring import (
    Observation,
    Profile,
    Ranked,
    ScoreSheet,
    load_profiles,
    rank_points,
    score_now,
    score_period,
)
from collector.scoring.profiles import level_of
from collector.store import observations, queries

# Hourly checks need a state at the period's opening: results are read this far back before the start.
LEAD_IN = timedelta(hours=3)
# A verdict only from what was seen against the exam the county set: an agent's result is evidence only when
# its report was checked against a policy the collector issued to the point (agent.policy ok, or warn: an
# older issued one). The collector's own results (人机信息相符, clock) are its own observations.
ISSUED_VERDICTS = (OK, WARN)


def counted(check: str, policy_verdict: str | None) -> bool:
    return check in COLLECTOR_CHECK_IDS or policy_verdict in ISSUED_VERDICTS


class ScoreError(ValueError):
    pass


@lru_cache(maxsize=1)
def profiles() -> dict[str, Profile]:
    return load_profiles()


def profile_for(name: str) -> Profile:
    try:
        return profiles()[name]
    except KeyError:
        raise ScoreError(f"point profile '{name}' is not one of {', '.join(sorted(profiles()))}") from None


def point_sheet(store, code: str, start: datetime | None = None, end: datetime | None = None,
                silence_intervals: int = SILENCE_INTERVALS_DEFAULT) -> ScoreSheet:
    """The point's sheet for a period, or for now when no period is given."""
    point = queries.point_summary(store, code, silence_intervals=silence_intervals)
    if point is None:
        raise ScoreError(f"no point with code '{code}'")
    profile = profile_for(point.profile)
    if start is None and end is None:
        obs = _latest(store, point.region_path, codes=[code]).get(code, [])
        return score_now(profile, obs, now=datetime.now(timezone.utc), interval=point.report_interval_s,
                         silent_after=silence_intervals * point.report_interval_s, level=level_of(point.region_path))
    start, end = _period(start, end)
    return score_period(profile, _history(store, code, start, end), start, end,
                        interval=point.report_interval_s, silent_after=silence_intervals * point.report_interval_s,
                        known_from=point.created_at, now=datetime.now(timezone.utc), level=level_of(point.region_path))


def _history(store, code: str, start: datetime, end: datetime):
    return (Observation(*row[:4]) for row in observations.observations(store, code, start - LEAD_IN, end)
            if counted(row[1], row[4]))


def _latest(store, scope: str, codes: list[str] | None = None) -> dict[str, list[Observation]]:
    return evidence_of(observations.latest_observations(store, scope, codes))


def evidence_of(rows_by_code: dict[str, list[tuple]]) -> dict[str, list[Observation]]:
    """Of latest_observations' rows, those that count as evidence (see ``counted``), for "now" scores."""
    return {code: [Observation(*row[:4]) for row in rows if counted(row[1], row[4])]
            for code, rows in rows_by_code.items()}


@dataclass
class RegionScores:
    scope: str
    start: datetime | None
    end: datetime | None
    ranking: list[Ranked]
    points: dict  # code -> PointSummary
    # profile -> item id -> (title, met count, scored count)
    item_rates: dict[str, dict[str, tuple[str, int, int]]] = field(default_factory=dict)


def region_scores(store, scope: str, start: datetime | None = None, end: datetime | None = None,
                  by: str = "share", silence_intervals: int = SILENCE_INTERVALS_DEFAULT) -> RegionScores:
    """Every point beneath ``scope`` scored and ranked; per profile, how many points meet each item."""
    points = {p.code: p for p in queries.list_points(store, scope, silence_intervals=silence_intervals)}
    now = datetime.now(timezone.utc)
    sheets: list[tuple[str, ScoreSheet]] = []
    if start is None and end is None:
        latest = _latest(store, scope)
        for code, p in points.items():
            sheets.append((code, score_now(profile_for(p.profile), latest.get(code, []), now=now,
                                           interval=p.report_interval_s,
                                           silent_after=silence_intervals * p.report_interval_s,
                                           level=level_of(p.region_path))))
    else:
        start, end = _period(start, end)
        for code, p in points.items():
            sheets.append((code, score_period(profile_for(p.profile), _history(store, code, start, end),
                                              start, end, interval=p.report_interval_s,
                                              silent_after=silence_intervals * p.report_interval_s,
                                              known_from=p.created_at, now=now, level=level_of(p.region_path))))
    rates: dict[str, dict[str, list]] = defaultdict(dict)
    for code, sheet in sheets:
        per_item = rates[points[code].profile]
        for item in sheet.items:
            if item.state not in ("met", "not_met"):  # the reviewer's, or not applicable to this point
                continue
            entry = per_item.setdefault(item.id, [item.title, 0, 0])
            entry[1] += item.state == "met"
            entry[2] += 1
    return RegionScores(scope, start, end, rank_points(sheets, by=by), points,
                        {prof: {k: tuple(v) for k, v in items.items()} for prof, items in rates.items()})


def _period(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    if start is None or end is None:
        raise ScoreError("a period needs both 'from' and 'to'")
    if start.tzinfo is None or end.tzinfo is None:
        raise ScoreError("'from' and 'to' need a time zone (RFC 3339, e.g. 2026-01-01T00:00:00+08:00)")
    if end <= start:
        raise ScoreError("'from' must be before 'to'")
    return start, end
