"""Scoring a point against a profile, for a period or for "now".

The period [start, end) is cut into slots of the point's expected report interval. Once the point's last
report is older than ``silent_after`` (default two intervals, so send jitter and one lost report do not
count), every slot fails every automatic item: silence never earns points. In a slot that has reports,
each (check, target) takes the highest-coded status it reported in that slot (rules.CODE); a check that runs less often than
the report interval (devices every 5 min, identity hourly) keeps its latest status for ``max_age`` after
the result, and is not seen after that (see below). Only the knowable slots are scored: from the point's
registration (``known_from``) until ``now`` (see ``score_period``).

A verdict only from what was seen. A (check, target) is known once it has a current result in the period
(a result from before the start that is still current counts) or, from the start, when ``expected`` lists
it. From then on, every slot without a current result for it (its carry-over ran out, it stopped
reporting, it was deleted from the point's config) holds the code MISSING until the period ends: the
requirement was not seen met through it. Before its first result a target that is not expected is simply
not there yet (a device added mid-period). Silent slots fail every item whatever the targets say. The
rules (rules.py) are evaluated on what was seen, three-valued: each condition surely holds, surely fails,
or is unknown in a slot, and an item is met only where its rule surely holds.
- ``<check> == ok`` (any status condition): holds where at least one target reported and every target it
  reads has a current result in the allowed statuses, so a MISSING target means not met ("all targets ok");
  it surely fails only where a target reported and none it reads is MISSING; else unknown (it never
  reported, or one of its targets is MISSING).
- ``all`` holds where every child surely holds; ``any`` where some child surely holds (the other children
  can still meet it, a MISSING target cannot); ``none`` only where every child surely fails, so neither a
  MISSING target nor a check that never reported passes "none fail" (not seen is not fine).
- counts count only what was seen: ``>=``/``>`` hold on the seen devices alone (a device not seen can only
  add); ``<``/``<=`` surely fail once the seen ones are too many; otherwise, with a device of the kind
  MISSING in the slot, the count is unknown.

Observations (5-field :class:`Observation` records) stream through once, in time order (a store query
ordered by receive time; reordering inside a slot does not matter), and only one
byte per slot per (check, target) is kept — never the result objects. Rules are then evaluated over those
bitmaps (see rules.py), so the cost is one Python step per observation plus a few C-level passes per item.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import NamedTuple

from collector.scoring.profiles import Profile
from collector.scoring.rules import CODE, UNKNOWN_CODE, Slots
from collector.scoring.sheets import ItemScore, ScoreSheet
from collector.scoring.slots import (
    MISSING,
    SlotCollector,
    holds,
    max_age_for,
    missing_checks,
    seconds_of,
    timestamp_of,
    utc_datetime,
)


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


def _unscored(item, level: str | None) -> ItemScore | None:
    """The sheet's line for an item the monitor does not score here, or None when it does."""
    if not item.applies(level):
        return _base(item, "not_applicable", None)
    if item.mode == "manual":
        return _base(item, "manual", None)
    return None


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
                 silent_after: float | timedelta | None = None,
                 expected: Mapping[str, Iterable[str]] | None = None, known_from: datetime | None = None,
                 now: datetime | None = None, level: str | None = None,
                 vetoed: Iterable[str] | None = None) -> ScoreSheet:
    """Score one point over [start, end); ``interval`` is its expected report interval.

    ``level`` is the point's region level (profiles.level_of): items whose ``applies_to`` leaves it out are
    not applicable. ``vetoed`` names the veto items a reviewer found: the sheet's earned is then 0.

    ``expected`` maps a check id (``device.<kind>`` for devices) to the targets the point must report for
    it (the central policy); an expected target is known from the period's start.

    Only knowable slots are scored: a slot is knowable when it starts at or after ``known_from`` (the
    point's registration; a slot it falls inside was partly before the point existed) and has ended by
    ``now`` (the slot still going on, and every later one, is not knowable yet). Every share
    (availability, ``reported_share``, the hold) is over the knowable slots, and failure times and
    incidents are taken inside them, so no failure time lies before the registration or after now.
    Silent knowable slots still fail: silence is knowable. With no knowable slot at all, every automatic
    item is ``no_data`` and the sheet is not ``evaluable``. Results from outside the knowable slots still
    carry over into them as usual.
    """
    vetoes = _check_vetoes(profile, vetoed)
    iv = seconds_of(interval)
    if iv <= 0:  # before the grace below divides by it
        raise ValueError("interval must be positive")
    grace = max(0, math.ceil(seconds_of(silent_after if silent_after is not None else 2 * iv) / iv - 1e-9) - 1)
    t0, t1 = timestamp_of(start), timestamp_of(end)
    if t1 <= t0:
        raise ValueError("the period is empty: end must be after start")
    n = math.ceil((t1 - t0) / iv)
    col = SlotCollector(t0, iv, n, max_age, expected)
    col.feed(observations)
    slots = col.finish()
    missing = missing_checks(slots)
    covered_bytes = bytearray(col.reported)
    if col.before:  # a report shortly before the start covers the opening slots too
        k = min(n, int((max(t for t, _ in col.before.values()) - t0) // iv) + grace + 1)
        if k > 0:
            covered_bytes[0:k] = b"\x01" * k
    reported = int.from_bytes(col.reported, "big")
    covered = int.from_bytes(covered_bytes, "big")
    for j in range(1, grace + 1):  # slot i is big-endian byte i: >> 8 moves a report on by one slot
        covered |= reported >> (8 * j)
    # The knowable slots [lo, hi): one window for every share, failure time and incident count.
    lo = 0 if known_from is None else min(n, max(0, math.ceil((timestamp_of(known_from) - t0) / iv - 1e-9)))
    hi = n if now is None or timestamp_of(now) >= t1 else min(n, max(0, math.floor((timestamp_of(now) - t0) / iv + 1e-9)))
    hi = max(lo, hi)
    k = hi - lo
    window = int.from_bytes(bytes(lo) + b"\x01" * k + bytes(n - hi), "big")
    sheet = _sheet(profile, level, start=utc_datetime(t0), end=utc_datetime(t1), interval=iv, slots=n, knowable_slots=k,
                   scored_from=utc_datetime(t0 + lo * iv), scored_until=utc_datetime(min(t1, t0 + hi * iv)),
                   reported_share=(reported & window).bit_count() / k if k else None)
    for item in profile.items:
        if (line := _unscored(item, level)) is not None:
            sheet.items.append(line)
            continue
        score = _base(item, "not_met", 0.0)
        sheet.items.append(score)
        if not k:
            score.state = "no_data"
            continue
        met = holds(item.rule.root, slots, missing) & covered & window
        good = met.bit_count()
        score.availability = good / k
        if good < k:
            bits = met.to_bytes(n, "big")[lo:hi]
            first, last = bits.find(b"\x00"), bits.rfind(b"\x00")
            score.first_failure = utc_datetime(t0 + (lo + first) * iv)
            score.last_failure = utc_datetime(min(t1, t0 + (lo + last + 1) * iv))
            score.incidents = bits.count(b"\x01\x00") + (1 if bits[0] == 0 else 0)
        # A share computed from whole slots; compare in slots so 95% of 8640 is exact.
        held = good >= math.ceil(item.rule.hold * k - 1e-9)
        if item.mode == "assisted":  # the rule is evidence for the reviewer, never points
            score.state, score.earned, score.evidence = "manual", None, "met" if held else "not_met"
        elif held:
            score.state, score.earned = "met", item.points
            sheet.earned += item.points
    return _finish_sheet(sheet, vetoes)


def score_now(profile: Profile, observations: Iterable, now: datetime | None = None,
              max_age: Mapping[str, float] | None = None, interval: float | timedelta = 60.0,
              silent_after: float | timedelta | None = None,
              expected: Mapping[str, Iterable[str]] | None = None, level: str | None = None,
              vetoed: Iterable[str] | None = None) -> ScoreSheet:
    """The latest state: each (check, target)'s most recent result, evaluated against the rules.

    With ``now`` given, a result older than its max_age (see ``max_age_for``) no longer counts, and once
    the newest result is older than ``silent_after`` the point is silent and nothing counts: silence
    never earns points. A target in ``expected`` (as for ``score_period``) without a current result is
    not seen. (A lapsed result of a target that is not expected is dropped: ``observations`` is the
    latest result per key, of any age, so "seen once" would hold a removed target against the point
    forever; the period sheet holds it until the period ends.) ``level`` and ``vetoed`` as for
    :func:`score_period`.
    """
    vetoes = _check_vetoes(profile, vetoed)
    iv = seconds_of(interval)
    latest: dict[tuple[str, str], tuple[float, int]] = {}
    for at, check, target, status, kind in observations:
        if kind and check == "device":
            check = f"device.{kind}"
        t = timestamp_of(at)
        prev = latest.get((check, target))
        if prev is None or t >= prev[0]:
            latest[(check, target)] = (t, CODE.get(status, UNKNOWN_CODE))
    t_now = timestamp_of(now) if now is not None else None
    if t_now is not None and silent_after is not None and latest and \
            t_now - max(t for t, _ in latest.values()) > seconds_of(silent_after):
        latest = {}
    want = {(check, t) for check, targets in (expected or {}).items() for t in targets}
    by_check: dict[str, list[tuple[str, bytearray]]] = {}
    for (check, target), (t, c) in latest.items():
        if t_now is not None and t_now - t > max_age_for(check, iv, max_age):
            continue
        want.discard((check, target))
        by_check.setdefault(check, []).append((target, bytearray((c,))))
    for check, target in want:
        by_check.setdefault(check, []).append((target, bytearray((MISSING,))))
    slots = Slots(1, by_check)
    missing = missing_checks(slots)
    sheet = _sheet(profile, level, at=utc_datetime(t_now) if t_now is not None else None, slots=1, interval=iv, knowable_slots=1)
    for item in profile.items:
        if (line := _unscored(item, level)) is not None:
            sheet.items.append(line)
            continue
        ok = bool(holds(item.rule.root, slots, missing))
        if item.mode == "assisted":
            score = _base(item, "manual", None)
            score.evidence = "met" if ok else "not_met"
        else:
            score = _base(item, "met" if ok else "not_met", item.points if ok else 0.0)
            if ok:
                sheet.earned += item.points
        sheet.items.append(score)
    return _finish_sheet(sheet, vetoes)
