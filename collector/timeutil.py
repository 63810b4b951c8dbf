"""Dates and times as every API and CLI takes them — one rule, one parser (:func:`parse_moment`).

- A plain date (``2026-01-31``) is a whole day in Beijing time (UTC+08:00, no daylight saving): as the
  start of a period (``from``, ``--from``, ``starts_at``) it is 00:00 of that day, as the end (``to``,
  ``--to``, ``ends_at``) the day is included, i.e. the period ends at 24:00 of it.
- An RFC 3339 time (``2026-01-31T08:00:00+08:00``, ``2026-01-31T00:00:00Z``) is taken as given; as an
  end it is excluded.
- A time without its offset (``2026-01-31T08:00``) is refused: say ``+08:00`` or ``Z``.

So ``from=2026-01-01&to=2026-01-31`` is January in Beijing, and ``from=2026-01-01T00:00:00Z`` starts at
08:00 Beijing time. The API's ``from``/``to`` (points' results and reports, scores, evidence), the
silences' ``starts_at``/``ends_at``, the web pages' date fields and the CLI's ``--from``/``--to`` all
read their values through :func:`parse_moment`.
"""

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
    """An aware datetime by the module's rule: ``2026-01-31`` -> that day's start in Beijing time (with
    end_of_day, the next day's start: the end of a period that includes the day); an RFC 3339 time as
    given. ValueError, with a message for people, for anything else."""
    text = (text or "").strip()
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
        raise ValueError(f"'{text}' is not a date (2026-01-31, a Beijing day) or an RFC 3339 time "
                         "(2026-01-31T08:00:00+08:00)") from None
    if moment.tzinfo is None:
        raise ValueError(f"'{text}' has no time zone: write a date (2026-01-31, a Beijing day) or a time "
                         "with its offset (2026-01-31T08:00:00+08:00 or …Z)")
    return moment
