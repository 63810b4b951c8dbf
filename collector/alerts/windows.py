"""Muting: maintenance windows (one-off, or daily hours such as a clinic closed 18:00–08:00) and silences.

Both are judged in the window's own time zone (Asia/Shanghai by default), whatever zone the server is in.
A daily window whose end is before its start runs overnight; the part after midnight belongs to the
previous day's window, so ``weekdays: [mon-fri]`` with 18:00–08:00 covers Friday night to Saturday 08:00.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from collector.alerts.config import Window
from collector.registry.regions import is_within


def applies(window: Window, point_code: str, region_path: str, rule: str | None) -> bool:
    if window.points and point_code not in window.points:
        return False
    if window.regions and not any(is_within(region_path, r) for r in window.regions):
        return False
    return not (rule and window.rules and rule not in window.rules)


def _occurrences(window: Window, now: datetime, days_back: int = 8):
    """(start, end) instants of the daily window's occurrences around ``now``, newest first."""
    start_t, end_t = window.daily
    local = now.astimezone(window.tz)
    for k in range(-1, days_back):
        day = local.date() - timedelta(days=k)
        if window.weekdays and day.weekday() not in window.weekdays:
            continue
        start = datetime.combine(day, start_t, tzinfo=window.tz)
        end = datetime.combine(day, end_t, tzinfo=window.tz)
        if end <= start:
            end += timedelta(days=1)
        yield start, end


def active(window: Window, now: datetime) -> bool:
    if window.daily is None:
        return window.start <= now < window.end
    return any(start <= now < end for start, end in _occurrences(window, now))


def last_end(window: Window, now: datetime) -> datetime | None:
    """When the window last ended at or before ``now`` (within a week), or None."""
    if window.daily is None:
        return window.end if window.end <= now else None
    ends = [end for _, end in _occurrences(window, now) if end <= now]
    return max(ends) if ends else None


def in_maintenance(windows: list[Window], point_code: str, region_path: str, rule: str | None,
                   now: datetime) -> Window | None:
    for w in windows:
        if applies(w, point_code, region_path, rule) and active(w, now):
            return w
    return None


def silence_baseline(windows: list[Window], point_code: str, region_path: str, now: datetime) -> datetime | None:
    """The latest end of a window covering the point's silence: the silence clock restarts there, so a
    clinic that switches its PC on a few minutes after opening does not page at 08:00 sharp."""
    ends = [last_end(w, now) for w in windows if applies(w, point_code, region_path, "point_silent")]
    ends = [e for e in ends if e is not None]
    return max(ends) if ends else None


def silence_matches(silence, point_code: str, region_path: str, rule: str, target: str, now: datetime) -> bool:
    """``silence`` is an alert_silences row (or anything with its fields)."""
    if not (_aware(silence.starts_at) <= now < _aware(silence.ends_at)):
        return False
    if silence.point_code and silence.point_code != point_code:
        return False
    if silence.rule and silence.rule != rule:
        return False
    if silence.target and silence.target != target:
        return False
    return is_within(region_path, silence.region_path or "/")


def _aware(ts):
    from datetime import timezone

    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
