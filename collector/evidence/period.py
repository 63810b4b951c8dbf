"""Evidence periods: reviewers name whole days in China time; machines may give RFC 3339 instants
(the one rule of collector.timeutil).

``--from 2026-01-01 --to 2026-03-31`` is every report received from 2026-01-01 00:00 to 2026-03-31 24:00
Beijing time (UTC+08:00, no daylight saving) — the ``to`` day is included, as on a paper sheet. An RFC 3339
instant is taken as it is, and ``to`` is then exclusive.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from collector.timeutil import CHINA, china_time, parse_moment


class PeriodError(ValueError):
    pass


@dataclass(frozen=True)
class Period:
    start: datetime  # aware, inclusive
    end: datetime  # aware, exclusive
    given_from: str
    given_to: str

    def as_json(self) -> dict:
        return {"from": iso(self.start), "to": iso(self.end), "to_exclusive": True, "timezone": "+08:00",
                "requested": {"from": self.given_from, "to": self.given_to}}

    @property
    def label(self) -> str:
        last = (self.end - timedelta(microseconds=1)).astimezone(CHINA)
        return f"{local(self.start, '%Y-%m-%d %H:%M')} 至 {last:%Y-%m-%d %H:%M}（北京时间）"


def _one(text: str, name: str, is_end: bool) -> datetime:
    try:
        return parse_moment(text or "", end_of_day=is_end)
    except ValueError as exc:
        raise PeriodError(f"--{name}: {exc}") from None


def parse_period(given_from: str, given_to: str) -> Period:
    start, end = _one(given_from, "from", False), _one(given_to, "to", True)
    if end <= start:
        raise PeriodError(f"the period is empty: --to {given_to} is not after --from {given_from}")
    if end - start > timedelta(days=400):
        raise PeriodError("the period is longer than 400 days; export it in parts")
    return Period(start.astimezone(timezone.utc), end.astimezone(timezone.utc), given_from, given_to)


def iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    ts = ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
    return ts.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def local(ts: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A time as reviewers read it: Beijing time."""
    return china_time(ts, fmt) or "—"
