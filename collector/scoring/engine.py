"""Scoring a point against a profile, for a period or for "now".

The period [start, end) is cut into slots of the point's expected report interval. Once the point's last
report is older than ``silent_after`` (default two intervals, so send jitter and one lost report do not
count), every slot fails every automatic item: silence never earns points. In a slot that has reports,
each (check, target) takes the worst status it reported in that slot; a check that runs less often than
the report interval (devices every 5 min, identity hourly) keeps its latest status for ``max_age`` after
the result, and is treated as absent after that.

Observations (5-field :class:`Observation` records) stream through once, in time order (a store query
ordered by receive time; reordering inside a slot does not matter), and only one
byte per slot per (check, target) is kept — never the result objects. Rules are then evaluated over those
bitmaps (see rules.py), so the cost is one Python step per observation plus a few C-level passes per item.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

from collector.scoring.profiles import Profile
from collector.scoring.rules import CODE, Slots

# How long a result stays current, by check family: three of the family's default run intervals
# (DESIGN.md: network 60s, devices and compliance 5m, identity and host 1h).
DEFAULT_MAX_AGE: dict[str, float] = {
    "net.": 180.0, "device.": 900.0, "isolation.": 900.0, "usage.": 900.0,
    "identity.": 3 * 3600.0, "host.": 3 * 3600.0,
}


class Observation(NamedTuple):
    """One check result as stored: when it was received, which check and target, its status.

    ``at`` is an aware datetime or POSIX seconds. Device results have check ``device.<kind>``; a store that
    keeps the kind apart may pass check ``"device"`` with ``kind`` set instead.
    """

    at: datetime | float
    check: str
    target: str
    status: str
    kind: str | None = None


@dataclass
class ItemScore:
    id: str
    title: str
    category: str
    points: float
    # met | not_met (auto items); manual (the reviewer's points: manual and assisted items);
    # not_applicable (the point's region level is not held to the item: out of the total)
    state: str
    earned: float | None  # None unless the monitor scores it: a reviewer scores manual and assisted items
    hold: float | None = None
    availability: float | None = None  # share of the period's slots in which the rule held
    first_failure: datetime | None = None  # start of the first failing slot
    last_failure: datetime | None = None  # end of the last failing slot (clipped to the period)
    incidents: int = 0  # runs of consecutive failing slots
    rule: str | None = None
    source: str = ""
    mode: str = "auto"  # auto | manual | assisted (profiles.py)
    evidence: str | None = None  # assisted items: what the monitor saw, met | not_met — not points
    review: str | None = None  # what the reviewer confirms
    hold_source: str | None = None  # who set the hold: "pointwatch 策略", not the standard
    inferred: bool = False  # the points are not printed in the document (推定)
    inferred_reason: str | None = None
    veto: bool = False  # a 一票否决 item
    vetoed: bool = False  # this item's veto was applied: the point's total is 0


@dataclass
class ScoreSheet:
    profile: str
    title: str
    total: float  # the table's full marks for this point (manual items included, not-applicable ones out)
    automatic_points: float  # what the monitor can award
    manual_points: float  # the reviewer's: manual and assisted items
    earned: float  # automatic points earned; 0 when vetoed
    items: list[ItemScore] = field(default_factory=list)
    start: datetime | None = None
    end: datetime | None = None
    interval: float | None = None
    slots: int = 0
    reported_share: float | None = None  # share of slots with any report at all
    at: datetime | None = None  # for "now" sheets
    assisted_points: float = 0.0  # part of manual_points: the monitor shows evidence, the reviewer scores
    inferred_points: float = 0.0  # points not printed in the document (推定), applicable items only
    not_applicable_points: float = 0.0  # items the point's region level is not held to
    level: str | None = None  # the point's region level, when known
    vetoed: bool = False  # a 一票否决 applies: the point's total is 0 whatever else it earned
    vetoed_by: list[str] = field(default_factory=list)  # the veto items applied

    @property
    def share(self) -> float:
        """Earned over what the monitor can award (0..1)."""
        return self.earned / self.automatic_points if self.automatic_points else 0.0

    def as_dict(self) -> dict:
        """JSON-ready: datetimes as RFC 3339 UTC strings."""
        def plain(v):
            return v.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if isinstance(v, datetime) else v
        out = {k: plain(v) for k, v in asdict(self).items() if k != "items"}
        out["share"] = self.share
        out["items"] = [{k: plain(v) for k, v in asdict(i).items()} for i in self.items]
        return out


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _ts(at: datetime | float) -> float:
    if isinstance(at, datetime):
        if at.tzinfo is None:
            at = at.replace(tzinfo=timezone.utc)
        return at.timestamp()
    return float(at)


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def max_age_for(check: str, interval: float, overrides: Mapping[str, float] | None = None) -> float:
    ages = {**DEFAULT_MAX_AGE, **(overrides or {})}
    best = max((p for p in ages if check.startswith(p)), key=len, default=None)
    return max(ages[best] if best else 0.0, 3 * interval)


class _Collector:
    """Streams observations into per-(check, target) slot bitmaps."""

    def __init__(self, start: float, interval: float, n: int, max_age: Mapping[str, float] | None):
        self.start, self.interval, self.n = start, interval, n
        self.max_age = max_age
        self.reported = bytearray(n)
        self.before: dict[tuple[str, str], tuple[float, str]] = {}
        self.series: dict[tuple[str, str], list] = {}  # key -> [codes, last_slot, last_code, carry]

    def feed(self, observations: Iterable) -> None:
        # The hot loop: one pass, local names only, no object per row kept.
        start, interval, n = self.start, self.interval, self.n
        reported, series, code_of = self.reported, self.series, CODE
        for at, check, target, status, kind in observations:
            if kind and check == "device":
                check = f"device.{kind}"
            s = int(((at if type(at) is float else _ts(at)) - start) // interval)
            if s < 0 or s >= n:
                if s < 0:  # before the period: only the latest counts, as the state the period opens with
                    self.before[(check, target)] = (at if type(at) is float else _ts(at), status)
                continue
            c = code_of.get(status, 4)  # an unknown status is no pass
            reported[s] = 1
            st = series.get((check, target))
            if st is None:
                carry = int(max_age_for(check, interval, self.max_age) // interval)
                codes = bytearray(n)
                codes[s] = c
                series[(check, target)] = [codes, s, c, carry]
                continue
            codes, last = st[0], st[1]
            if s > last:
                if s > last + 1 and st[3]:
                    k = min(s - last - 1, st[3])
                    codes[last + 1:last + 1 + k] = bytes((st[2],)) * k
                codes[s] = c
                st[1] = s
                st[2] = c
            else:
                # Same slot (or a late arrival): the worst status stands; the latest is what carries on.
                if c > codes[s]:
                    codes[s] = c
                if s == last:
                    st[2] = c

    def finish(self) -> Slots:
        for key, (t, status) in self.before.items():
            # A result from before the start stays current into the period for its max_age, until the
            # key's own first result in the period.
            k = min(self.n, int((t + max_age_for(key[0], self.interval, self.max_age) - self.start)
                                // self.interval) + 1)
            st = self.series.get(key)
            if st is None:
                if k <= 0:
                    continue
                st = self.series[key] = [bytearray(self.n), -1, 0,
                                         int(max_age_for(key[0], self.interval, self.max_age) // self.interval)]
            codes, c = st[0], CODE.get(status, 4)
            for i in range(max(0, k)):
                if codes[i]:
                    break
                codes[i] = c
        by_check: dict[str, list[tuple[str, bytearray]]] = {}
        for (check, target), (codes, last, last_c, carry) in self.series.items():
            k = min(self.n - last - 1, carry)
            if k > 0 and last >= 0:  # the latest result stays current for max_age, up to the period's end
                codes[last + 1:last + 1 + k] = bytes((last_c,)) * k
            by_check.setdefault(check, []).append((target, codes))
        return Slots(self.n, by_check)


def _check_vetoes(profile: Profile, vetoed: Iterable[str] | None) -> frozenset[str]:
    chosen = frozenset(vetoed or ())
    veto_ids = {i.id for i in profile.items if i.veto}
    unknown = sorted(chosen - veto_ids)
    if unknown:
        raise ValueError(f"'{unknown[0]}' is not a veto (一票否决) item of {profile.name}"
                         f" (veto items: {', '.join(sorted(veto_ids)) or 'none'})")
    return chosen


def _sheet(profile: Profile, level: str | None, **kw) -> ScoreSheet:
    applicable = [i for i in profile.items if i.applies(level)]
    return ScoreSheet(profile=profile.name, title=profile.title, total=sum(i.points for i in applicable),
                      automatic_points=sum(i.points for i in applicable if i.mode == "auto"),
                      manual_points=sum(i.points for i in applicable if i.mode != "auto"),
                      assisted_points=sum(i.points for i in applicable if i.mode == "assisted"),
                      inferred_points=sum(i.points for i in applicable if i.inferred),
                      not_applicable_points=sum(i.points for i in profile.items if not i.applies(level)),
                      level=level, earned=0.0, **kw)


def _base(item, state: str, earned: float | None) -> ItemScore:
    return ItemScore(item.id, item.title, item.category, item.points, state, earned,
                     source=f"{item.source.file} {item.source.item}".strip(), mode=item.mode,
                     review=item.review, inferred=item.inferred, inferred_reason=item.reason, veto=item.veto,
                     rule=item.rule.text if item.rule else None, hold=item.rule.hold if item.rule else None,
                     hold_source=item.rule.hold_source if item.rule else None)


def _finish_sheet(sheet: ScoreSheet, vetoes: frozenset[str]) -> ScoreSheet:
    """Apply the vetoes: a vetoed point's total is 0 whatever else it earned."""
    for it in sheet.items:
        if it.id in vetoes and it.state != "not_applicable":
            it.vetoed = True
            sheet.vetoed_by.append(it.id)
    if sheet.vetoed_by:
        sheet.vetoed, sheet.earned = True, 0.0
    return sheet


def score_period(profile: Profile, observations: Iterable, start: datetime, end: datetime,
                 interval: float | timedelta, max_age: Mapping[str, float] | None = None,
                 silent_after: float | timedelta | None = None, level: str | None = None,
                 vetoed: Iterable[str] | None = None) -> ScoreSheet:
    """Score one point over [start, end); ``interval`` is its expected report interval.

    ``level`` is the point's region level (profiles.level_of): items whose ``applies_to`` leaves it out are
    not applicable. ``vetoed`` names the veto items a reviewer found: the sheet's earned is then 0.
    """
    vetoes = _check_vetoes(profile, vetoed)
    iv = _seconds(interval)
    grace = max(0, math.ceil(_seconds(silent_after if silent_after is not None else 2 * iv) / iv - 1e-9) - 1)
    if iv <= 0:
        raise ValueError("interval must be positive")
    t0, t1 = _ts(start), _ts(end)
    if t1 <= t0:
        raise ValueError("the period is empty: end must be after start")
    n = math.ceil((t1 - t0) / iv)
    col = _Collector(t0, iv, n, max_age)
    col.feed(observations)
    slots = col.finish()
    covered_bytes = bytearray(col.reported)
    if col.before:  # a report shortly before the start covers the opening slots too
        k = min(n, int((max(t for t, _ in col.before.values()) - t0) // iv) + grace + 1)
        if k > 0:
            covered_bytes[0:k] = b"\x01" * k
    reported = int.from_bytes(col.reported, "big")
    covered = int.from_bytes(covered_bytes, "big")
    for j in range(1, grace + 1):  # slot i is big-endian byte i: >> 8 moves a report on by one slot
        covered |= reported >> (8 * j)
    sheet = _sheet(profile, level, start=_dt(t0), end=_dt(t1), interval=iv, slots=n,
                   reported_share=reported.bit_count() / n)
    for item in profile.items:
        if not item.applies(level):
            sheet.items.append(_base(item, "not_applicable", None))
            continue
        if item.mode == "manual":
            sheet.items.append(_base(item, "manual", None))
            continue
        met = item.rule.mask(slots) & covered
        good = met.bit_count()
        score = _base(item, "not_met", 0.0)
        score.availability = good / n
        if good < n:
            bits = met.to_bytes(n, "big")
            first, last = bits.find(b"\x00"), bits.rfind(b"\x00")
            score.first_failure = _dt(t0 + first * iv)
            score.last_failure = _dt(min(t1, t0 + (last + 1) * iv))
            score.incidents = bits.count(b"\x01\x00") + (1 if bits[0] == 0 else 0)
        # A share computed from whole slots; compare in slots so 95% of 8640 is exact.
        held = good >= math.ceil(item.rule.hold * n - 1e-9)
        if item.mode == "assisted":  # the rule is evidence for the reviewer, never points
            score.state, score.earned, score.evidence = "manual", None, "met" if held else "not_met"
        elif held:
            score.state, score.earned = "met", item.points
            sheet.earned += item.points
        sheet.items.append(score)
    return _finish_sheet(sheet, vetoes)


def score_now(profile: Profile, observations: Iterable, now: datetime | None = None,
              max_age: Mapping[str, float] | None = None, interval: float | timedelta = 60.0,
              silent_after: float | timedelta | None = None, level: str | None = None,
              vetoed: Iterable[str] | None = None) -> ScoreSheet:
    """The latest state: each (check, target)'s most recent result, evaluated against the rules.

    With ``now`` given, a result older than its max_age (see ``max_age_for``) no longer counts, and once
    the newest result is older than ``silent_after`` the point is silent and nothing counts: silence
    never earns points. ``level`` and ``vetoed`` as for :func:`score_period`.
    """
    vetoes = _check_vetoes(profile, vetoed)
    iv = _seconds(interval)
    latest: dict[tuple[str, str], tuple[float, int]] = {}
    for at, check, target, status, kind in observations:
        if kind and check == "device":
            check = f"device.{kind}"
        t = _ts(at)
        prev = latest.get((check, target))
        if prev is None or t >= prev[0]:
            latest[(check, target)] = (t, CODE.get(status, 4))
    t_now = _ts(now) if now is not None else None
    if t_now is not None and silent_after is not None and latest and \
            t_now - max(t for t, _ in latest.values()) > _seconds(silent_after):
        latest = {}
    by_check: dict[str, list[tuple[str, bytearray]]] = {}
    for (check, target), (t, c) in latest.items():
        if t_now is not None and t_now - t > max_age_for(check, iv, max_age):
            continue
        by_check.setdefault(check, []).append((target, bytearray((c,))))
    slots = Slots(1, by_check)
    sheet = _sheet(profile, level, at=_dt(t_now) if t_now is not None else None, slots=1, interval=iv)
    for item in profile.items:
        if not item.applies(level):
            sheet.items.append(_base(item, "not_applicable", None))
            continue
        if item.mode == "manual":
            sheet.items.append(_base(item, "manual", None))
            continue
        ok = bool(item.rule.mask(slots))
        if item.mode == "assisted":
            score = _base(item, "manual", None)
            score.evidence = "met" if ok else "not_met"
        else:
            score = _base(item, "met" if ok else "not_met", item.points if ok else 0.0)
            if ok:
                sheet.earned += item.points
        sheet.items.append(score)
    return _finish_sheet(sheet, vetoes)
