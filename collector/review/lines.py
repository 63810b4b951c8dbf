"""A review's arithmetic, pure: the frozen automatic part plus the reviewer's entries, item by item.

The frozen part is the monitor's sheet for the period (``ScoreSheet.as_dict()``) as it stood when the review
was opened. Each applicable item then counts:

- an automatic item (``mode`` auto): what the monitor earned, unless the reviewer overrode it on site with a
  reason, when the reviewer's score counts and both verdicts are kept;
- a manual or assisted item: the reviewer's score (assisted items show the monitor's evidence beside it);
  until it is entered it is missing, and a review with a missing item cannot be submitted;
- a 一票否决 item the reviewer marked: the total is 0, whatever else was earned.

``automatic + manual = total`` whenever no veto applies. Scores run from 0 to the item's points in halves
(the tables use 2.5); a checklist profile's items are met or not (0 or their one point).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

STEP = 0.5
MAX_NOTE = 2000
MAX_REASON = 1000


class EntryError(ValueError):
    """An entry the item cannot take; ``field`` names the part of the request at fault."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name


def items_of(frozen: dict) -> list[dict]:
    return list((frozen.get("sheet") or {}).get("items") or [])


def find_item(frozen: dict, item_id: str) -> dict:
    for it in items_of(frozen):
        if it["id"] == item_id:
            return it
    raise EntryError("item", f"'{item_id}' is not an item of profile {frozen.get('sheet', {}).get('profile')}")


def _score(value, item: dict, scoring: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise EntryError("score", f"item '{item['id']}': 'score' must be a number")
    points = float(item["points"])
    if value < 0 or value > points + 1e-9:
        raise EntryError("score", f"item '{item['id']}': score {value:g} is outside 0..{points:g}")
    if scoring == "checklist":
        if not (math.isclose(value, 0) or math.isclose(value, points)):
            raise EntryError("score", f"item '{item['id']}': a checklist item is met or not: 0 or {points:g}")
    elif not math.isclose(value / STEP, round(value / STEP), abs_tol=1e-9):
        raise EntryError("score", f"item '{item['id']}': scores go in steps of {STEP:g}, not {value:g}")
    return float(value)


def _text(value, name: str, item_id: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise EntryError(name, f"item '{item_id}': '{name}' must be text")
    value = value.strip()
    if len(value) > limit:
        raise EntryError(name, f"item '{item_id}': '{name}' is longer than {limit} characters")
    if any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise EntryError(name, f"item '{item_id}': '{name}' holds control characters")
    return value


def validate(frozen: dict, item_id: str, score, note=None, veto=None, reason=None) -> dict | None:
    """The entry to store for ``item_id``, or None to clear it (``score`` null); EntryError when it cannot be."""
    item = find_item(frozen, item_id)
    if item["state"] == "not_applicable":
        raise EntryError("item", f"item '{item_id}' does not apply to this point: it is out of the total")
    if score is None:
        return None
    scoring = (frozen.get("sheet") or {}).get("scoring", "points")
    entry = {"score": _score(score, item, scoring), "note": _text(note, "note", item_id, MAX_NOTE),
             "veto": False, "reason": None}
    if veto is not None and not isinstance(veto, bool):
        raise EntryError("veto", f"item '{item_id}': 'veto' is true or false")
    if veto:
        if not item.get("veto"):
            raise EntryError("veto", f"item '{item_id}' is not a 一票否决 item")
        entry["veto"] = True
    if item.get("mode", "auto") == "auto":
        why = _text(reason, "reason", item_id, MAX_REASON)
        if not why:
            raise EntryError("reason", f"item '{item_id}' is scored by the monitor; overriding its verdict on site "
                                       "needs a 'reason'")
        entry["reason"] = why
    return entry


@dataclass
class Line:
    id: str
    title: str
    category: str
    points: float
    mode: str
    veto_item: bool
    monitor_state: str  # the frozen ItemScore state: met | not_met | no_data | manual | not_applicable
    monitor_earned: float | None  # automatic items: what the monitor awarded
    evidence: str | None  # assisted items: what the monitor saw (met | not_met)
    review: str | None  # what the reviewer confirms
    score: float | None = None  # the reviewer's
    note: str = ""
    reason: str | None = None
    vetoed: bool = False
    overridden: bool = False
    counted: float | None = None  # what the item adds to the total
    attachments: list = field(default_factory=list)

    @property
    def applicable(self) -> bool:
        return self.monitor_state != "not_applicable"

    @property
    def manual(self) -> bool:
        return self.mode != "auto"

    @property
    def missing(self) -> bool:
        return self.applicable and self.manual and self.score is None


def lines(frozen: dict, entries: dict, attachments: list | None = None) -> list[Line]:
    files: dict[str, list] = {}
    for a in attachments or []:
        files.setdefault(a.get("item") or "", []).append(a)
    out = []
    for it in items_of(frozen):
        e = entries.get(it["id"])
        line = Line(it["id"], it["title"], it["category"], float(it["points"]), it.get("mode", "auto"),
                    bool(it.get("veto")), it["state"], it.get("earned"), it.get("evidence"), it.get("review"),
                    attachments=files.get(it["id"], []))
        if e is not None and line.applicable:
            line.score, line.note, line.reason = e["score"], e.get("note") or "", e.get("reason")
            line.vetoed = bool(e.get("veto")) and line.veto_item
        if not line.applicable:
            pass
        elif not line.manual:
            line.overridden = line.score is not None and bool(line.reason)
            line.counted = line.score if line.overridden else float(line.monitor_earned or 0.0)
        else:
            line.counted = line.score
        out.append(line)
    return out


def totals(frozen: dict, ls: list[Line], general: list | None = None) -> dict:
    """The sheet's sums: ``automatic + manual = total`` unless ``vetoed`` (then total is 0)."""
    auto = sum(x.counted or 0.0 for x in ls if x.applicable and not x.manual)
    manual = sum(x.counted or 0.0 for x in ls if x.applicable and x.manual)
    vetoed_by = [x.id for x in ls if x.vetoed]
    sheet = frozen.get("sheet") or {}
    return {"automatic": auto, "automatic_monitor": float(sheet.get("earned") or 0.0), "manual": manual,
            "total": 0.0 if vetoed_by else auto + manual, "vetoed": bool(vetoed_by), "vetoed_by": vetoed_by,
            "full_marks": float(sheet.get("total") or 0.0),
            "automatic_points": float(sheet.get("automatic_points") or 0.0),
            "manual_points": float(sheet.get("manual_points") or 0.0),
            "missing": [x.id for x in ls if x.missing], "overridden": [x.id for x in ls if x.overridden],
            "general_attachments": len(general or [])}


def line_json(x: Line) -> dict:
    out = asdict(x)
    out["missing"] = x.missing
    return out
