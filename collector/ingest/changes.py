"""What makes a result news: the test ingest applies before it writes a results row (issue 21).

A report's every result is a sample, but most say what the key's previous results row already said. Ingest
writes a row only when this module says the sample is news; the report itself is kept whole (hash-chained
body) and names the keys it carried (collector/store/historymodels.py), so scoring still counts every
sample: a key's status in a report is that of its latest row at or before it.

News, compared with the key's last row in storage order (its *tail*):
- there is no row yet, or the status differs (every status change is a row, so a verdict never rests on a
  sample that was not written);
- the message says something else once its numbers are set aside ("延迟 35 毫秒" and "延迟 36 毫秒" are one
  message class, "打印机缺纸" and "打印机卡纸" are two);
- the value, or a number in the details, moved beyond the deadband of its check (CHECK_DEADBANDS) or else
  of its unit (DEADBANDS), or appeared or went away; anything else in the details changed;
- the value crossed a threshold the caller names (an alert rule's), even within the deadband;
- the heartbeat is due: ``heartbeat_s`` or more since the key's last row (charts get a point at least that
  often; 0 writes every sample, as before this module), or the receive clock is more than that behind it.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import NamedTuple

from agent.vocabulary import AGENT_CLOCK_SKEW


class Deadband(NamedTuple):
    """A move counts when it is larger than ``absolute`` and than ``relative`` × the tail's magnitude."""

    absolute: float
    relative: float

    def moved(self, old: float, new: float) -> bool:
        if math.isnan(old) or math.isnan(new):
            return not (math.isnan(old) and math.isnan(new))
        return abs(new - old) > max(self.absolute, self.relative * abs(old))


EXACT = Deadband(0.0, 0.0)  # any change is news
# By unit (agent/checks: latencies in seconds, shares as ratios; counts are exact). A unit not listed: EXACT.
DEADBANDS: dict[str, Deadband] = {
    "seconds": Deadband(0.002, 0.2),
    "s": Deadband(0.002, 0.2),
    "ratio": Deadband(0.01, 0.0),
}
# By check, before its unit's: the clock skew's status turns warn beyond minutes (a status change is always
# news), and what moves it by milliseconds is the network's jitter, not the clock.
CHECK_DEADBANDS: dict[str, Deadband] = {AGENT_CLOCK_SKEW: Deadband(1.0, 0.0)}
HEARTBEAT_S_DEFAULT = 300.0

_NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)*")


def message_class(message: str) -> str:
    return _NUMBER.sub("#", message or "")


class Tail(NamedTuple):
    """What a key's last results row said (collector/store/historymodels.py ResultTail)."""

    status: str
    message: str
    value: float | None
    details: str  # the JSON text stored
    written_at: datetime


def is_news(tail: Tail | None, status: str, message: str, value: float | None, unit: str | None,
            details: str, received_at: datetime, heartbeat_s: float, thresholds: tuple[float, ...] = (),
            check: str = "") -> bool:
    """Whether a sample of a key must be written as a results row (``details``: its stored JSON text).
    ``thresholds``: values of the check's that something judges the value against (an alert rule's): a
    value crossing one is news however small the move (the rule must see the crossing)."""
    if tail is None or status != tail.status:
        return True
    since_row = (received_at - tail.written_at).total_seconds()
    # A clock stepped back by more than a heartbeat would hold the heartbeat until it caught up again; a
    # smaller difference (two collectors' clocks) only delays it, rather than writing every sample.
    if heartbeat_s <= 0 or since_row >= heartbeat_s or since_row < -heartbeat_s:
        return True
    band = CHECK_DEADBANDS.get(check) or DEADBANDS.get(unit or "", EXACT)
    if (value is None) != (tail.value is None) or (value is not None and band.moved(tail.value, value)):
        return True
    if value is not None and any((value >= t) != (tail.value >= t) for t in thresholds):
        return True
    if message != tail.message and message_class(message) != message_class(tail.message):
        return True
    return details != tail.details and _details_moved(tail.details, details, band)


def _details_moved(old_text: str, new_text: str, band: Deadband) -> bool:
    try:
        old, new = json.loads(old_text), json.loads(new_text)
    except ValueError:
        return True
    return _moved(old, new, band)


def _moved(old, new, band: Deadband) -> bool:
    if isinstance(old, bool) or isinstance(new, bool):
        return old != new
    if isinstance(old, (int, float)) and isinstance(new, (int, float)):
        return band.moved(float(old), float(new))
    if isinstance(old, dict) and isinstance(new, dict):
        return old.keys() != new.keys() or any(_moved(old[k], new[k], band) for k in old)
    if isinstance(old, list) and isinstance(new, list):
        return len(old) != len(new) or any(_moved(a, b, band) for a, b in zip(old, new, strict=True))
    return old != new
