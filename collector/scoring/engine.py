"""Scoring a point against a profile, for a period or for "now".

The period [start, end) is cut into slots of the point's expected report interval. Once the point's last
report is older than ``silent_after`` (default two intervals, so send jitter and one lost report do not
count), every slot fails every automatic item: silence never earns points. In a slot that has reports,
each (check, target) takes the highest-coded status it reported in that slot (rules.CODE); a check that runs less often than
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
from collector.scoring.rules import CODE, UNKNOWN_CODE, Slots

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
    state: str  # met | not_met | manual
    earned: float | None  # None for manual items: a reviewer scores them
    hold: float | None = None
    availability: float | None = None  # share of the period's slots in which the rule held
    first_failure: datetime | None = None  # start of the first failing slot
    last_failure: datetime | None = None  # end of the last failing slot (clipped to the period)
    incidents: int = 0  # runs of consecutive failing slots
    rule: str | None = None
    source: str = ""


@dataclass
class ScoreSheet:
    profile: str
    title: str
    total: float  # the table's full marks, manual items included
    automatic_points: float  # what the monitor can award
    manual_points: float
    earned: float  # automatic points earned
    items: list[ItemScore] = field(default_factory=list)
    start: datetime | None = None
    end: datetime | None = None
    interval: float | None = None
    slots: int = 0
    reported_share: float | None = None  # share of slots with any report at all
    at: datetime | None = None  # for "now" sheets

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
        reported, series, code_of, unknown = self.reported, self.series, CODE, UNKNOWN_CODE
        for at, check, target, status, kind in observations:
            if kind and check == "device":
                check = f"device.{kind}"
            s = int(((at if type(at) is float else _ts(at)) - start) // interval)
            if s < 0 or s >= n:
                if s < 0:  # before the period: only the latest counts, as the state the period opens with
                    self.before[(check, target)] = (at if type(at) is float else _ts(at), status)
                continue
            c = code_of.get(status, unknown)  # an unknown status is no pass
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
                # Same slot (or a late arrival): the highest code stands; the latest is what carries on.
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
            codes, c = st[0], CODE.get(status, UNKNOWN_CODE)
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


def _sheet(profile: Profile, **kw) -> ScoreSheet:
    return ScoreSheet(profile=profile.name, title=profile.title, total=profile.total,
                      automatic_points=profile.automatic_points, manual_points=profile.manual_points,
                      earned=0.0, **kw)


def _manual(item) -> ItemScore:
    return ItemScore(item.id, item.title, item.category, item.points, "manual", None,
                     source=f"{item.source.file} {item.source.item}".strip())


def score_period(profile: Profile, observations: Iterable, start: datetime, end: datetime,
                 interval: float | timedelta, max_age: Mapping[str, float] | None = None,
                 silent_after: float | timedelta | None = None) -> ScoreSheet:
    """Score one point over [start, end); ``interval`` is its expected report interval."""
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
    sheet = _sheet(profile, start=_dt(t0), end=_dt(t1), interval=iv, slots=n,
                   reported_share=reported.bit_count() / n)
    for item in profile.items:
        if item.manual:
            sheet.items.append(_manual(item))
            continue
        met = item.rule.mask(slots) & covered
        good = met.bit_count()
        availability = good / n
        score = ItemScore(item.id, item.title, item.category, item.points, "not_met", 0.0, hold=item.rule.hold,
                          availability=availability, rule=item.rule.text,
                          source=f"{item.source.file} {item.source.item}".strip())
        if good < n:
            bits = met.to_bytes(n, "big")
            first, last = bits.find(b"\x00"), bits.rfind(b"\x00")
            score.first_failure = _dt(t0 + first * iv)
            score.last_failure = _dt(min(t1, t0 + (last + 1) * iv))
            score.incidents = bits.count(b"\x01\x00") + (1 if bits[0] == 0 else 0)
        # A share computed from whole slots; compare in slots so 95% of 8640 is exact.
        if good >= math.ceil(item.rule.hold * n - 1e-9):
            score.state, score.earned = "met", item.points
            sheet.earned += item.points
        sheet.items.append(score)
    return sheet


def score_now(profile: Profile, observations: Iterable, now: datetime | None = None,
              max_age: Mapping[str, float] | None = None, interval: float | timedelta = 60.0,
              silent_after: float | timedelta | None = None) -> ScoreSheet:
    """The latest state: each (check, target)'s most recent result, evaluated against the rules.

    With ``now`` given, a result older than its max_age (see ``max_age_for``) no longer counts, and once
    the newest result is older than ``silent_after`` the point is silent and nothing counts: silence
    never earns points.
    """
    iv = _seconds(interval)
    latest: dict[tuple[str, str], tuple[float, int]] = {}
    for at, check, target, status, kind in observations:
        if kind and check == "device":
            check = f"device.{kind}"
        t = _ts(at)
        prev = latest.get((check, target))
        if prev is None or t >= prev[0]:
            latest[(check, target)] = (t, CODE.get(status, UNKNOWN_CODE))
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
    sheet = _sheet(profile, at=_dt(t_now) if t_now is not None else None, slots=1, interval=iv)
    for item in profile.items:
        if item.manual:
            sheet.items.append(_manual(item))
            continue
        ok = bool(item.rule.mask(slots))
        sheet.items.append(ItemScore(item.id, item.title, item.category, item.points,
                                     "met" if ok else "not_met", item.points if ok else 0.0,
                                     hold=item.rule.hold, rule=item.rule.text,
                                     source=f"{item.source.file} {item.source.item}".strip()))
        if ok:
            sheet.earned += item.points
    return sheet
