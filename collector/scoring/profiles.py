"""Standards profiles: configs/standards/<name>.yaml, each the 自评表 (or the part of it named in
``covers``) of one source document.

An item is scored one of three ways (``mode``):

- ``auto`` (an item with a ``rule``): the monitor earns it, but only when its rule held — when the
  monitor has seen the requirement met;
- ``manual`` (``manual: true``): a reviewer scores it (signage, staffing, paperwork);
- ``assisted`` (``mode: assisted`` with a ``rule`` and a ``review``): 自动+人工 — the rule's result is shown
  as evidence, the points are the reviewer's (counted as manual), and ``review`` says what the reviewer
  confirms on site. For items whose rule sees only part of the requirement, and for devices the monitor
  may not see (an analog phone, a screen on HDMI, a copier with no network).

Points the document does not print are ``inferred: true`` with a ``reason``; ``veto: true`` marks a
一票否决 item (manual); ``applies_to`` limits an item to points at some region levels (``town``,
``village``…): elsewhere it is not applicable, neither met nor failed and out of the total.

Loading validates everything and names the file and item in each error: unknown check ids, bad rule
syntax, points that do not add up to the profile's (and each category's) total.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from agent.datafiles import config_path
from collector.scoring.rules import Rule, RuleError, parse_rule

SCORING_KINDS = ("points", "checklist")  # checklist: each item met or not, one point each

_PROFILE_KEYS = {"name", "title", "source", "covers", "scoring", "total", "categories", "notes", "items"}
_ITEM_KEYS = {"id", "title", "category", "indicator", "points", "source", "manual", "mode", "rule", "note",
              "review", "inferred", "reason", "veto", "applies_to"}
MODES = ("auto", "manual", "assisted")
# Region levels by depth of a point's region path (省/市/县/镇/村, collector/registry/regions.py).
REGION_LEVELS = ("province", "city", "county", "town", "village")


def level_of(region_path: str | None) -> str | None:
    """The level of a point from its region path: 'a/b/c/d' is a town, five names a village."""
    if not region_path:
        return None
    depth = len([p for p in region_path.strip().strip("/").split("/") if p.strip()])
    return REGION_LEVELS[depth - 1] if 1 <= depth <= len(REGION_LEVELS) else None


class ProfileError(ValueError):
    """An invalid profile; the message starts with the file (and item) at fault."""


@dataclass(frozen=True)
class Source:
    file: str
    item: str


@dataclass(frozen=True)
class Item:
    id: str
    title: str
    category: str
    points: float
    source: Source
    mode: str  # auto | manual | assisted (see the module docstring)
    rule: Rule | None  # auto and assisted items; for assisted ones it is evidence, not points
    indicator: str | None = None
    note: str | None = None
    review: str | None = None  # what the reviewer confirms (assisted items; optional on manual ones)
    inferred: bool = False  # the points are not printed in the document (推定)
    reason: str | None = None  # why the inferred points are what they are
    veto: bool = False  # 一票否决: a vetoed point's total is 0
    applies_to: tuple[str, ...] | None = None  # region levels; None = every point

    @property
    def manual(self) -> bool:
        """The points are the reviewer's (manual and assisted items)."""
        return self.mode != "auto"

    def applies(self, level: str | None) -> bool:
        """Whether a point at ``level`` is held to this item; an unknown level is held to every item."""
        return self.applies_to is None or level is None or level in self.applies_to


@dataclass(frozen=True)
class Profile:
    name: str
    title: str
    source: Source
    scoring: str
    total: float
    items: tuple[Item, ...]
    categories: dict[str, float] = field(default_factory=dict)
    path: str = ""
    covers: str = ""  # what part of the document the profile lists

    @property
    def automatic_points(self) -> float:
        """What the monitor can award by itself (auto items)."""
        return sum(i.points for i in self.items if i.mode == "auto")

    @property
    def manual_points(self) -> float:
        """The reviewer's points: manual and assisted items."""
        return sum(i.points for i in self.items if i.mode != "auto")

    @property
    def assisted_points(self) -> float:
        return sum(i.points for i in self.items if i.mode == "assisted")

    @property
    def inferred_points(self) -> float:
        return sum(i.points for i in self.items if i.inferred)

    def item(self, item_id: str) -> Item:
        for i in self.items:
            if i.id == item_id:
                return i
        raise KeyError(item_id)


def default_dir() -> Path:
    """configs/standards of this checkout, unless POINTWATCH_STANDARDS_DIR says otherwise."""
    env = os.environ.get("POINTWATCH_STANDARDS_DIR")
    return Path(env) if env else config_path("standards")


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ProfileError(f"{where}: points must be a number >= 0, got {value!r}")
    return float(value)


def _text(node: dict, key: str, where: str) -> str:
    value = node.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ProfileError(f"{where}: '{key}' is required (a non-empty string)")
    return value.strip()


def _source(node, where: str) -> Source:
    if not isinstance(node, dict) or not isinstance(node.get("file"), str):
        raise ProfileError(f"{where}: 'source' must be {{file: ..., item: ...}}")
    item = node.get("item", node.get("part", ""))
    return Source(node["file"], str(item))


def _item(node, scoring: str, where: str) -> Item:
    if not isinstance(node, dict):
        raise ProfileError(f"{where}: an item must be a mapping")
    item_id = node.get("id")
    if not isinstance(item_id, str) or not item_id:
        raise ProfileError(f"{where}: 'id' is required")
    where = f"{where} '{item_id}'"
    unknown = sorted(set(node) - _ITEM_KEYS)
    if unknown:
        raise ProfileError(f"{where}: unknown key '{unknown[0]}' (allowed: {', '.join(sorted(_ITEM_KEYS))})")
    if scoring == "checklist":
        if "points" in node and node["points"] != 1:
            raise ProfileError(f"{where}: checklist items count one each; drop 'points'")
        points = 1.0
    else:
        if "points" not in node:
            raise ProfileError(f"{where}: 'points' is required")
        points = _number(node["points"], where)
    manual = node.get("manual", False)
    if not isinstance(manual, bool):
        raise ProfileError(f"{where}: 'manual' must be true or false")
    mode = node.get("mode", "manual" if manual else "auto")
    if mode not in MODES:
        raise ProfileError(f"{where}: mode must be one of {', '.join(MODES)}")
    if manual and mode != "manual":
        raise ProfileError(f"{where}: 'manual: true' and 'mode: {mode}' contradict each other")
    if (mode == "manual") == ("rule" in node):
        raise ProfileError(f"{where}: give either 'manual: true' or a 'rule', exactly one")
    rule = None
    if mode != "manual":
        try:
            rule = parse_rule(node["rule"])
        except RuleError as e:
            raise ProfileError(f"{where}: {e}") from None
    review = node.get("review")
    if review is not None and (not isinstance(review, str) or not review.strip()):
        raise ProfileError(f"{where}: 'review' must be a non-empty string")
    if mode == "assisted" and review is None:
        raise ProfileError(f"{where}: an assisted item says what the reviewer confirms ('review')")
    if mode == "auto" and review is not None:
        raise ProfileError(f"{where}: 'review' is for manual and assisted items; an auto item's points are "
                           "the monitor's")
    inferred = node.get("inferred", False)
    if not isinstance(inferred, bool):
        raise ProfileError(f"{where}: 'inferred' must be true or false")
    reason = node.get("reason")
    if inferred != (reason is not None):
        raise ProfileError(f"{where}: inferred points need a 'reason', and a 'reason' needs 'inferred: true'")
    if inferred and (not isinstance(reason, str) or not reason.strip()):
        raise ProfileError(f"{where}: 'reason' must be a non-empty string")
    veto = node.get("veto", False)
    if not isinstance(veto, bool):
        raise ProfileError(f"{where}: 'veto' must be true or false")
    if veto and mode != "manual":
        raise ProfileError(f"{where}: a veto (一票否决) is a reviewer's finding: give it 'manual: true'")
    applies_to = node.get("applies_to")
    if applies_to is not None:
        if (not isinstance(applies_to, list) or not applies_to
                or any(level not in REGION_LEVELS for level in applies_to)):
            raise ProfileError(f"{where}: 'applies_to' lists region levels ({', '.join(REGION_LEVELS)})")
        applies_to = tuple(applies_to)
    return Item(id=item_id, title=_text(node, "title", where), category=_text(node, "category", where),
                points=points, source=_source(node.get("source"), where), mode=mode, rule=rule,
                indicator=node.get("indicator"), note=node.get("note"),
                review=review.strip() if review else None, inferred=inferred,
                reason=reason.strip() if reason else None, veto=veto, applies_to=applies_to)


def parse_profile(data, path: str | Path) -> Profile:
    where = str(path)
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: a profile is a mapping")
    unknown = sorted(set(data) - _PROFILE_KEYS)
    if unknown:
        raise ProfileError(f"{where}: unknown key '{unknown[0]}'")
    name = _text(data, "name", where)
    if Path(path).suffix in (".yaml", ".yml") and Path(path).stem != name:
        raise ProfileError(f"{where}: name '{name}' does not match the file name")
    scoring = data.get("scoring", "points")
    if scoring not in SCORING_KINDS:
        raise ProfileError(f"{where}: scoring must be one of {', '.join(SCORING_KINDS)}")
    raw_items = data.get("items")
    if not isinstance(raw_items, list) or not raw_items:
        raise ProfileError(f"{where}: 'items' must be a non-empty list")
    items = tuple(_item(node, scoring, f"{where}: item {n + 1}") for n, node in enumerate(raw_items))
    seen: set[str] = set()
    for it in items:
        if it.id in seen:
            raise ProfileError(f"{where}: item '{it.id}': duplicate id")
        seen.add(it.id)
    total = _number(data.get("total"), f"{where}: total")
    got = sum(i.points for i in items)
    if not math.isclose(got, total, abs_tol=1e-9):
        raise ProfileError(f"{where}: items add up to {got:g} points, the profile's total is {total:g}")
    categories = data.get("categories") or {}
    if not isinstance(categories, dict):
        raise ProfileError(f"{where}: 'categories' maps each 项目 to its points")
    if categories:
        for it in items:
            if it.category not in categories:
                raise ProfileError(f"{where}: item '{it.id}': category '{it.category}' is not among "
                                   f"{', '.join(categories)}")
        for cat, pts in categories.items():
            got = sum(i.points for i in items if i.category == cat)
            if not math.isclose(got, _number(pts, f"{where}: category {cat}"), abs_tol=1e-9):
                raise ProfileError(f"{where}: category '{cat}': items add up to {got:g}, expected {pts:g}")
    return Profile(name=name, title=_text(data, "title", where), source=_source(data.get("source"), where),
                   scoring=scoring, total=total, items=items,
                   categories={k: float(v) for k, v in categories.items()}, path=where,
                   covers=_text(data, "covers", where) if "covers" in data else "")


def load_profile(path: str | Path) -> Profile:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ProfileError(f"{path}: not valid YAML: {e}") from None
    return parse_profile(data, path)


def load_profiles(directory: str | Path | None = None) -> dict[str, Profile]:
    directory = Path(directory) if directory is not None else default_dir()
    profiles = {}
    for path in sorted(directory.glob("*.yaml")):
        profile = load_profile(path)
        profiles[profile.name] = profile
    return profiles
