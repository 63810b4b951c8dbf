"""Dates as county staff and reviewers type them: a bare date is a whole day in China time (UTC+8)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")  # no daylight saving since 1991


def china_time(ts: datetime | str | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """A datetime (naive = UTC) or RFC 3339 string as China time, the way staff read clocks; "" for None."""
    if not ts:
        return ""
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    ts = ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
    return ts.astimezone(CHINA).strftime(fmt)


def parse_moment(text: str, *, end_of_day: bool = False) -> datetime:
    """``2026-01-31`` -> that day's start (or, with end_of_day, the next day's start) in China time;
    an RFC 3339 time with or without zone (none = China time) as given."""
    text = text.strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        start = datetime(day.year, day.month, day.day, tzinfo=CHINA)
        return start + timedelta(days=1) if end_of_day else start
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"'{text}' is not a date (2026-01-31) or time (2026-01-31T08:00:00+08:00)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=CHINA)
