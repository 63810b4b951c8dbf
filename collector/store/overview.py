"""The overview of a region: points worst first, filtered and paginated in SQL, with the region tree's counts.

Reads only `points`, `point_state` and `latest_results` (never history), and the point's state comes from
counters kept at ingest, so a region of 25,000 points answers in well under a second.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy import and_, case, distinct, func, literal, or_, select

from agent.vocabulary import ERROR, FAIL, POINT_STATES, SILENT, WARN, zero_counts
from collector.registry.regions import normalize_path, split_path
from collector.store import models as m
from collector.store.regionscope import within

# Check families as the standards name them (family -> check id prefix); the overview filters and totals by
# these. Their names for people are the web layer's (collector/api/ui.py).
FAMILIES = {
    "core": "net.core.",
    "isolation": "isolation.",
    "identity": "identity.",
    "usage": "usage.",
    "device": "device.",
    "host": "host.",
}
PROBLEM = (FAIL, ERROR)


@dataclass
class OverviewQuery:
    scope: str = "/"
    state: str | None = None
    family: str | None = None
    device_kind: str | None = None
    search: str | None = None
    page: int = 1
    per_page: int = 100


@dataclass
class OverviewRow:
    code: str
    name: str
    region_path: str
    profile: str
    simulated: bool
    state: str
    counts: dict[str, int]
    last_received_at: datetime | None
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (check, target, message)


@dataclass
class Overview:
    query: OverviewQuery
    rows: list[OverviewRow]
    matched: int
    state_counts: Counter
    common_region: str  # the deepest region holding every point of the scope
    children: list[tuple[str, str, Counter]]  # (path, name, counts by state) of common_region's children
    violations: dict[str, int]  # family -> points with a failing check of that family

    @property
    def pages(store) -> int:
        return max(1, -(-store.matched // store.query.per_page))


def _rank(now: datetime):
    """The point's index in POINT_STATES (worst first), from the counters ingest keeps."""
    ps = m.PointState
    by_state = {FAIL: ps.n_fail, ERROR: ps.n_error, WARN: ps.n_warn}
    return case(
        (or_(ps.silent_after.is_(None), ps.silent_after < now), POINT_STATES.index(SILENT)),
        *[(by_state[state] > 0, POINT_STATES.index(state)) for state in POINT_STATES if state in by_state],
        else_=len(POINT_STATES) - 1)


def _in_scope(column, scope: str):
    return within(column, scope)


def _problem_in(check_like: str, statuses=PROBLEM):
    lr = m.LatestResult
    return select(lr.point_code).where(lr.point_code == m.Point.code, lr.check.like(check_like),
                                       lr.status.in_(statuses)).exists()


def overview(store, q: OverviewQuery, now: datetime | None = None) -> Overview:
    now = now or datetime.now(timezone.utc)
    scope = normalize_path(q.scope)
    rank = _rank(now).label("rank")
    base = (select(m.Point, m.PointState, rank)
            .outerjoin(m.PointState, m.PointState.point_code == m.Point.code)
            .where(_in_scope(m.Point.region_path, scope)))
    conditions = []
    if q.state in POINT_STATES:
        conditions.append(_rank(now) == POINT_STATES.index(q.state))
    if q.family in FAMILIES:
        conditions.append(_problem_in(FAMILIES[q.family] + "%", PROBLEM + (WARN,)))
    if q.device_kind:
        conditions.append(_problem_in(f"device.{q.device_kind}", PROBLEM + (WARN,)))
    if q.search:
        needle = "%" + q.search.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conditions.append(or_(m.Point.code.like(needle, escape="\\"), m.Point.name.like(needle, escape="\\")))
    filtered = base.where(and_(*conditions)) if conditions else base

    with store.session() as s:
        matched = s.scalar(select(func.count()).select_from(filtered.subquery()))
        page = max(1, q.page)
        rows = s.execute(filtered.order_by("rank", m.Point.code)
                         .limit(q.per_page).offset((page - 1) * q.per_page)).all()
        out = [OverviewRow(
            code=p.code, name=p.name, region_path=p.region_path, profile=p.profile, simulated=p.simulated,
            state=POINT_STATES[r], last_received_at=_aware(st.last_received_at) if st else None,
            counts=_counts(st),
        ) for p, st, r in rows]
        _attach_problems(s, out)
        state_counts, common, children = _region_counts(s, scope, now)
        violations = _violations(s, scope)
    return Overview(q, out, matched or 0, state_counts, common, children, violations)


def _counts(st) -> dict[str, int]:
    counts = zero_counts()
    if st is not None:
        counts.update(ok=st.n_ok or 0, warn=st.n_warn or 0, fail=st.n_fail or 0, error=st.n_error or 0)
    return counts


def _attach_problems(s, rows: list[OverviewRow]) -> None:
    if not rows:
        return
    by_code = {r.code: r for r in rows}
    lr = m.LatestResult
    for code, check, target, message in s.execute(
            select(lr.point_code, lr.check, lr.target, lr.message)
            .where(lr.point_code.in_(list(by_code)), lr.status.in_(PROBLEM + (WARN,)))
            .order_by(lr.point_code, lr.status.desc(), lr.check)):
        by_code[code].problems.append((check, target, message))


def _region_counts(s, scope: str, now: datetime) -> tuple[Counter, str, list[tuple[str, str, Counter]]]:
    """Counts by state for the scope and for the child regions of its deepest common region.

    A county's staff should not click through 省 › 市 › 县 when every point below the root is in one county,
    so a chain of single children is skipped and ``common`` names where the tree really branches."""
    # Group over a subquery: PostgreSQL will not match two renderings of the rank CASE (their bind
    # parameters differ) between the select list and GROUP BY.
    ranked = (select(m.Point.region_path.label("path"), _rank(now).label("rank"))
              .outerjoin(m.PointState, m.PointState.point_code == m.Point.code)
              .where(_in_scope(m.Point.region_path, scope))).subquery()
    stmt = select(ranked.c.path, ranked.c.rank, func.count()).group_by(ranked.c.path, ranked.c.rank)
    grouped = [(split_path(path), POINT_STATES[r], n) for path, r, n in s.execute(stmt)]
    total: Counter = Counter()
    for _, state, n in grouped:
        total[state] += n
    common = split_path(scope)
    if grouped:
        shortest = min(len(parts) for parts, _, _ in grouped)
        depth = len(common)
        while depth < shortest and len({tuple(parts[: depth + 1]) for parts, _, _ in grouped}) == 1:
            depth += 1
        common = grouped[0][0][:depth]
    children: dict[str, Counter] = defaultdict(Counter)
    for parts, state, n in grouped:
        if len(parts) > len(common):
            children["/".join(parts[: len(common) + 1])][state] += n
    return total, "/".join(common) or "/", [(path, split_path(path)[-1], counts)
                                            for path, counts in sorted(children.items())]


def _violations(s, scope: str) -> dict[str, int]:
    lr = m.LatestResult
    family = case(*[(lr.check.like(prefix + "%"), literal(key)) for key, prefix in FAMILIES.items()],
                  else_=literal("other"))
    stmt = (select(family, func.count(distinct(lr.point_code)))
            .join(m.Point, m.Point.code == lr.point_code)
            .where(lr.status == FAIL, _in_scope(m.Point.region_path, scope))
            .group_by(family))
    counts = {key: 0 for key in FAMILIES}
    for key, n in s.execute(stmt):
        if key in counts:
            counts[key] = n
    return counts


def _aware(ts):
    return None if ts is None else (ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc))
