"""The rule language of the standards profiles, and its evaluation over per-slot status bitmaps.

A rule reads like the requirement it stands for (Gatus-style conditions, Wazuh SCA-style all/any/none):

    rule:
      all: ["net.core.tcp == ok", "net.core.icmp in [ok, warn]"]
      hold: 95%

Conditions:
- ``<check> == ok`` / ``!= fail`` / ``in [ok, warn]`` / ``not in [fail, error]`` — the status of a check.
  A check with several targets holds when at least one target reported and every reported target satisfies
  it; ``<check>[<target>] …`` narrows to one target. ``device.<kind>`` is a check like any other.
- ``device.<kind>.present >= 1`` — how many devices of a kind answered: status ok. A ``warn`` is not
  counted — the agent reports an absent optional device, and one it could not verify, as non-ok, and the
  engine sees statuses only, not details. ``.ok`` is the same count, ``.reported`` any result at all.
  Comparisons: == != >= > <= <.
Combinators ``all``/``any``/``none`` nest; the top level carries ``hold``, the share of the period's slots
in which the rule must hold for the item to be met. No standard prints such a share: every hold is this
project's policy, and a rule says so (``hold_source``, default :data:`HOLD_POLICY`).

Evaluation works on one bytearray per (check, target): one byte per slot, 0 = no result, else
``CODE[status]`` (the highest seen in the slot). Each condition turns those into a mask — a big int
holding 0x01 or 0x00 per slot byte — with ``bytes.translate`` and integer and/or, so a 30-day period
costs a handful of C-level passes per condition instead of a Python loop per slot.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from agent.vocabulary import (
    DEVICE_KINDS,
    ERROR,
    OK,
    SCORABLE_CHECK_IDS,
    STATUS_CODE,
    STATUSES,
    family_of,
)

# Slot codes: 0 = nothing reported, else 1 + the status's number on the wire (STATUS_CODE), and a slot keeps
# the highest code seen in it. A slot that saw an error and a fail keeps the error: either fails any
# condition that admits neither, and the hand-made bitmaps of tests/test_scoring_rules.py spell these codes.
# A status the vocabulary does not know counts as an error: it proves nothing.
CODE = {status: 1 + number for status, number in STATUS_CODE.items()}
UNKNOWN_CODE = CODE[ERROR]
# What a rule may name: the agent's checks plus 人机信息相符 (tests/test_profiles.py keeps this in step with
# agent/checks).
CHECK_IDS = SCORABLE_CHECK_IDS
COUNT_ATTRS = {"present": (OK,), "ok": (OK,), "reported": STATUSES}  # present = answered (ok)
COMBINATORS = ("all", "any", "none")

_COMPARE: dict[str, Callable[[int, int], bool]] = {
    "==": operator.eq, "!=": operator.ne, ">=": operator.ge, ">": operator.gt, "<=": operator.le,
    "<": operator.lt,
}
_COND_RE = re.compile(
    r"^\s*(?P<subject>[a-z][a-z0-9_.]*)(?:\[(?P<target>[^\]]+)\])?\s*"
    r"(?P<op>==|!=|>=|<=|>|<|not\s+in|in)\s*(?P<value>.+?)\s*$")


class RuleError(ValueError):
    """A rule that does not parse; the profile loader adds the file and item."""


def _table(codes: Iterable[int]) -> bytes:
    """A bytes.translate table mapping the given slot codes to 1 and everything else to 0."""
    t = bytearray(256)
    for c in codes:
        t[c] = 1
    return bytes(t)


_REPORTED = _table(CODE.values())


@dataclass(frozen=True)
class Slots:
    """What a rule is evaluated against: slot codes per check, for n slots."""

    n: int
    by_check: Mapping[str, list[tuple[str, bytearray]]]  # check -> [(target, codes)]

    @property
    def ones(self) -> int:
        return int.from_bytes(b"\x01" * self.n, "big")


def _mask(data: bytes | bytearray, table: bytes) -> int:
    return int.from_bytes(data.translate(table), "big")


@dataclass(frozen=True)
class StatusCond:
    text: str
    check: str
    target: str | None
    allowed: frozenset[str]

    def mask(self, slots: Slots) -> int:
        series = [codes for tgt, codes in slots.by_check.get(self.check, ())
                  if self.target is None or tgt == self.target]
        if not series:
            return 0  # a check that never reported never holds
        ok_or_absent = _table([0, *(CODE[s] for s in self.allowed)])
        every, some = slots.ones, 0
        for codes in series:
            every &= _mask(codes, ok_or_absent)
            some |= _mask(codes, _REPORTED)
        return every & some

    def checks(self) -> set[str]:
        return {self.check}


@dataclass(frozen=True)
class CountCond:
    text: str
    check: str  # device.<kind>
    attr: str
    op: str
    value: int

    def mask(self, slots: Slots) -> int:
        counted = _table(CODE[s] for s in COUNT_ATTRS[self.attr])
        total = 0
        # Adding 0/1-per-byte ints adds per slot: no carry crosses a byte while a kind has < 256 devices.
        for _tgt, codes in slots.by_check.get(self.check, ())[:255]:
            total += _mask(codes, counted)
        per_slot = total.to_bytes(slots.n, "big")
        cmp = _COMPARE[self.op]
        return _mask(per_slot, bytes(1 if cmp(c, self.value) else 0 for c in range(256)))

    def checks(self) -> set[str]:
        return {self.check}


@dataclass(frozen=True)
class Combo:
    kind: str  # all | any | none
    children: tuple

    def mask(self, slots: Slots) -> int:
        if self.kind == "all":
            m = slots.ones
            for c in self.children:
                m &= c.mask(slots)
            return m
        m = 0
        for c in self.children:
            m |= c.mask(slots)
        return m if self.kind == "any" else slots.ones & ~m

    def checks(self) -> set[str]:
        return set().union(*(c.checks() for c in self.children))

    @property
    def text(self) -> str:
        return f"{self.kind}(" + ", ".join(c.text for c in self.children) + ")"


HOLD_POLICY = "pointwatch 策略"  # the hold shares are the project's, not the standards'


@dataclass(frozen=True)
class Rule:
    root: Combo
    hold: float  # 0 < hold <= 1
    hold_source: str = HOLD_POLICY  # who sets the hold: no standard prints one

    def mask(self, slots: Slots) -> int:
        return self.root.mask(slots)

    def checks(self) -> set[str]:
        return self.root.checks()

    @property
    def text(self) -> str:
        return f"{self.root.text} hold {self.hold:.0%}"


def _statuses(value: str, op: str) -> frozenset[str]:
    if op in ("in", "not in"):
        if not (value.startswith("[") and value.endswith("]")):
            raise RuleError(f"'{op}' wants a list such as [ok, warn], got '{value}'")
        names = [v.strip().strip("'\"") for v in value[1:-1].split(",") if v.strip()]
        if not names:
            raise RuleError("empty status list")
    else:
        names = [value.strip("'\"")]
    bad = [s for s in names if s not in STATUSES]
    if bad:
        raise RuleError(f"unknown status {bad[0]!r} (statuses: {', '.join(STATUSES)})")
    chosen = frozenset(names)
    return frozenset(STATUSES) - chosen if op in ("!=", "not in") else chosen


def parse_condition(text: str) -> StatusCond | CountCond:
    if not isinstance(text, str):
        raise RuleError(f"a condition is a string such as \"net.core.tcp == ok\", got {text!r}")
    m = _COND_RE.match(text)
    if not m:
        raise RuleError(f"cannot parse condition '{text}' (expected e.g. \"net.core.tcp == ok\" or "
                        f"\"device.kiosk.present >= 1\")")
    subject, target, value = m["subject"], m["target"], m["value"]
    op = re.sub(r"\s+", " ", m["op"])
    if subject in CHECK_IDS:
        if op not in ("==", "!=", "in", "not in"):
            raise RuleError(f"'{text}': a check's status takes ==, !=, in or not in, not '{op}'")
        return StatusCond(text.strip(), subject, target.strip() if target else None, _statuses(value, op))
    check, _, attr = subject.rpartition(".")
    if check in CHECK_IDS and family_of(check) == "device" and attr in COUNT_ATTRS:
        if target:
            raise RuleError(f"'{text}': a device count covers every device of the kind; drop the [target]")
        if op not in _COMPARE:
            raise RuleError(f"'{text}': a count takes ==, !=, >=, >, <= or <, not '{op}'")
        try:
            n = int(value)
        except ValueError:
            raise RuleError(f"'{text}': a count compares with a whole number, not '{value}'") from None
        return CountCond(text.strip(), check, attr, op, n)
    if family_of(check) == "device" and attr:
        raise RuleError(f"'{text}': unknown device '{subject}' (kinds: {', '.join(DEVICE_KINDS)}; "
                        f"counts: {', '.join(COUNT_ATTRS)})")
    raise RuleError(f"'{text}': unknown check id '{subject}'")


def _parse_node(node, where: str) -> Combo:
    if not isinstance(node, Mapping):
        raise RuleError(f"{where}: expected a mapping with one of {', '.join(COMBINATORS)}")
    keys = [k for k in node if k in COMBINATORS]
    extra = [k for k in node if k not in COMBINATORS and k not in ("hold", "hold_source")]
    if len(keys) != 1 or extra:
        raise RuleError(f"{where}: expected exactly one of {', '.join(COMBINATORS)}"
                        + (f" (unexpected key '{extra[0]}')" if extra else ""))
    kind = keys[0]
    items = node[kind]
    if not isinstance(items, list) or not items:
        raise RuleError(f"{where}: '{kind}' wants a non-empty list of conditions")
    children = tuple(parse_condition(c) if isinstance(c, str) else _parse_node(c, f"{where}.{kind}")
                     for c in items)
    return Combo(kind, children)


def parse_hold(value) -> float:
    """'95%' or a fraction 0.95; a bare number over 1 is refused rather than guessed at."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            share = float(value.strip()[:-1]) / 100
        except ValueError:
            raise RuleError(f"hold '{value}' is not a percentage") from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        share = float(value)
        if share > 1:
            raise RuleError(f"hold {value}: write a percentage like '{value}%' or a fraction <= 1")
    else:
        raise RuleError(f"hold wants a share such as 95%, got {value!r}")
    if not 0 < share <= 1:
        raise RuleError(f"hold {value} must be above 0% and at most 100%")
    return share


def parse_rule(node) -> Rule:
    if not isinstance(node, Mapping):
        raise RuleError("rule: expected a mapping such as {all: [...], hold: 95%}")
    if "hold" not in node:
        raise RuleError("rule: 'hold' (the share of the period the rule must hold) is missing")
    source = node.get("hold_source", HOLD_POLICY)
    if not isinstance(source, str) or not source.strip():
        raise RuleError("rule: 'hold_source' names who sets the hold (default: pointwatch 策略)")
    return Rule(_parse_node(node, "rule"), parse_hold(node["hold"]), source.strip())
