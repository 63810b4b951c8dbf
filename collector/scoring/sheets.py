"""What a score says: one item's verdict (ItemScore) and a point's sheet (ScoreSheet), as engine.py makes them
and the API, the pages and the evidence show them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone


@dataclass
class ItemScore:
    id: str
    title: str
    category: str
    points: float
    # met | not_met (auto items); manual (the reviewer's points: manual and assisted items);
    # not_applicable (the point's region level is not held to the item: out of the total);
    # no_data: not evaluable, the period has no knowable slot (not yet begun, or wholly before the point's
    # registration); never met, earns 0, availability and failures None.
    state: str
    earned: float | None  # None unless the monitor scores it: a reviewer scores manual and assisted items
    hold: float | None = None
    availability: float | None = None  # share of the knowable slots in which the rule held
    first_failure: datetime | None = None  # start of the first failing knowable slot
    last_failure: datetime | None = None  # end of the last failing knowable slot (never after now)
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
    slots: int = 0  # the period's slots
    reported_share: float | None = None  # share of the knowable slots with any report at all
    at: datetime | None = None  # for "now" sheets
    # The denominator of every share and the window of every failure time: the slots that were knowable,
    # [scored_from, scored_until) (see score_period); 0 means nothing in the sheet could be evaluated.
    knowable_slots: int = 0
    scored_from: datetime | None = None
    scored_until: datetime | None = None
    assisted_points: float = 0.0  # part of manual_points: the monitor shows evidence, the reviewer scores
    inferred_points: float = 0.0  # points not printed in the document (推定), applicable items only
    not_applicable_points: float = 0.0  # items the point's region level is not held to
    level: str | None = None  # the point's region level, when known
    vetoed: bool = False  # a 一票否决 applies: the point's total is 0 whatever else it earned
    vetoed_by: list[str] = field(default_factory=list)  # the veto items applied

    @property
    def evaluable(self) -> bool:
        """False when no slot was knowable: every automatic item is then ``no_data``."""
        return self.knowable_slots > 0

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
        out["evaluable"] = self.evaluable
        out["items"] = [{k: plain(v) for k, v in asdict(i).items()} for i in self.items]
        return out
