"""Observations into per-slot status bytes, and the three-valued evaluation of a rule over them.

The semantics (what counts as seen, MISSING, how each rule holds) are described in engine.py's docstring;
this module is their implementation: one Python step per observation, then C-level passes per item.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone

from collector.scoring.rules import CODE, UNKNOWN_CODE, Combo, CountCond, Slots, StatusCond

# How long a result stays current, by check family: three of the family's default run intervals
# (DESIGN.md: network 60s, devices and compliance 5m, identity and host 1h).
DEFAULT_MAX_AGE: dict[str, float] = {
    "net.": 180.0, "device.": 900.0, "isolation.": 900.0, "usage.": 900.0,
    "identity.": 3 * 3600.0, "host.": 3 * 3600.0,
}
# The slot code of a (check, target) that is known to exist but has no current result: no status table of
# rules.py holds it, so it is no pass, is not "reported" and is not counted.
MISSING = 255
_TO_MISSING = bytes([MISSING, *range(1, 256)])  # translate: 0 -> MISSING, everything else unchanged
_IS_MISSING = bytes(1 if c == MISSING else 0 for c in range(256))
_IS_REPORTED = bytes(1 if c in CODE.values() else 0 for c in range(256))


def seconds_of(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def timestamp_of(at: datetime | float) -> float:
    if isinstance(at, datetime):
        if at.tzinfo is None:
            at = at.replace(tzinfo=timezone.utc)
        return at.timestamp()
    return float(at)


def utc_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def max_age_for(check: str, interval: float, overrides: Mapping[str, float] | None = None) -> float:
    ages = {**DEFAULT_MAX_AGE, **(overrides or {})}
    best = max((p for p in ages if check.startswith(p)), key=len, default=None)
    return max(ages[best] if best else 0.0, 3 * interval)


class SlotCollector:
    """Streams observations into per-(check, target) slot bitmaps."""

    def __init__(self, start: float, interval: float, n: int, max_age: Mapping[str, float] | None,
                 expected: Mapping[str, Iterable[str]] | None = None):
        self.start, self.interval, self.n = start, interval, n
        self.max_age = max_age
        self.expected = {(check, t) for check, targets in (expected or {}).items() for t in targets}
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
            s = int(((at if type(at) is float else timestamp_of(at)) - start) // interval)
            if s < 0 or s >= n:
                if s < 0:  # before the period: only the latest counts, as the state the period opens with
                    self.before[(check, target)] = (at if type(at) is float else timestamp_of(at), status)
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
        for key in self.expected:
            if key not in self.series:
                self.series[key] = [bytearray(self.n), -1, 0, 0]
        by_check: dict[str, list[tuple[str, bytearray]]] = {}
        for key, (codes, last, last_c, carry) in self.series.items():
            k = min(self.n - last - 1, carry)
            if k > 0 and last >= 0:  # the latest result stays current for max_age, up to the period's end
                codes[last + 1:last + 1 + k] = bytes((last_c,)) * k
            # Known from its first current result (from the start if expected): no result after that is
            # "not seen", never "not there".
            first = 0 if key in self.expected else self.n - len(codes.lstrip(b"\x00"))
            if first < self.n:
                codes[first:] = codes[first:].translate(_TO_MISSING)
            by_check.setdefault(key[0], []).append((key[1], codes))
        return Slots(self.n, by_check)


def _leaf_mask(node, slots: Slots, table: bytes) -> int:
    """Slots in which any series the condition reads maps to 1 under ``table``."""
    target = getattr(node, "target", None)
    m = 0
    for tgt, codes in slots.by_check.get(node.check, ()):
        if target is None or tgt == target:
            m |= int.from_bytes(codes.translate(table), "big")
    return m


def _eval(node, slots: Slots, missing: frozenset[str], want_false: bool) -> tuple[int, int]:
    """(slots where ``node`` surely holds, slots where it surely does not); the second is 0 unless wanted."""
    if isinstance(node, Combo):
        if node.kind == "none":  # holds where every child surely fails; fails where any child surely holds
            t, f = slots.ones, 0
            for c in node.children:
                ct, cf = _eval(c, slots, missing, True)
                t &= cf
                f |= ct
            return t, f
        if node.kind == "all":
            t, f = slots.ones, 0
            for c in node.children:
                ct, cf = _eval(c, slots, missing, want_false)
                t &= ct
                f |= cf
            return t, f
        t, f = 0, slots.ones if want_false else 0  # any
        for c in node.children:
            ct, cf = _eval(c, slots, missing, want_false)
            t |= ct
            f &= cf
        return t, f
    held = node.mask(slots)  # a MISSING byte is no pass and is not counted (see MISSING)
    if not isinstance(node, (StatusCond, CountCond)):
        return held, 0  # a condition this evaluator does not know is never surely false
    op = getattr(node, "op", "")
    rising, falling = op in (">=", ">"), op in ("<", "<=")
    if isinstance(node, StatusCond) or rising:
        if not want_false:  # the common case: no extra pass
            return held, 0
    miss = _leaf_mask(node, slots, _IS_MISSING) if node.check in missing else 0
    if isinstance(node, StatusCond):
        return held, _leaf_mask(node, slots, _IS_REPORTED) & ~miss & ~held
    t = held if rising else held & ~miss  # a device not seen might still be counted
    return t, slots.ones & ~held & (slots.ones if falling else ~miss) if want_false else 0


def holds(node, slots: Slots, missing: frozenset[str]) -> int:
    """The slots in which a rule (its root) holds on what was seen; ``missing`` names the checks that have
    a MISSING byte anywhere (the others skip the extra passes)."""
    return _eval(node, slots, missing, False)[0]


def missing_checks(slots: Slots) -> frozenset[str]:
    return frozenset(check for check, series in slots.by_check.items() if any(MISSING in c for _, c in series))
