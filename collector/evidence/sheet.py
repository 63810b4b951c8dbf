"""The 自评表 of one point for one period: the one place that talks to the scoring engine.

Rows are laid out like the standards' tables — 项目 / 评价指标 / 具体内容 / 分值 / 得分 / 依据. Automatic items
are filled from ``collector.scoring.score_period`` (availability, incidents, first and last failures);
manual items keep an empty 得分 for the reviewer. The same pass over the stored results also builds the
per-(check, target) record shown in the 专网专机专用 and device sections, so results are read only once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from agent.vocabulary import OK, PILLAR_CN, WARN, family_of, zero_counts
from collector.evidence.period import Period, local
from collector.scoring.rules import HOLD_POLICY
from collector.web.item_text import item_basis
from collector.web.labels import DEVICE_LABEL, SHEET_CHECK_LABEL, STATUS_LABEL


@dataclass
class Row:
    category: str  # 项目
    indicator: str  # 评价指标
    content: str  # 具体内容
    points: float  # 分值
    earned: float | None  # 得分; None = the reviewer scores it
    basis: str  # 依据
    state: str  # an ItemScore state: met | not_met | manual | not_applicable | no_data
    item_id: str = ""


@dataclass
class Series:
    """Counts and failure times of one (check, target) over the period."""

    check: str
    target: str
    counts: dict = field(default_factory=zero_counts)
    first_problem: datetime | None = None
    last_problem: datetime | None = None
    last_status: str | None = None
    last_at: datetime | None = None
    messages: dict = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def ok_share(self) -> float | None:
        return (self.counts[OK] + self.counts[WARN]) / self.total if self.total else None


@dataclass
class PointSheet:
    profile: str
    profile_title: str
    total: float
    automatic_points: float
    manual_points: float
    earned: float
    rows: list[Row]
    reported_share: float | None
    series: dict[tuple[str, str], Series]
    notes: list[str] = field(default_factory=list)

    def dedicated(self) -> list[Series]:
        return [s for k, s in sorted(self.series.items()) if family_of(k[0]) in PILLAR_CN]

    def devices(self) -> list[Series]:
        return [s for k, s in sorted(self.series.items()) if family_of(k[0]) == "device"]


def lookback(interval_s: float) -> timedelta:
    """How far before the period to read, so the engine sees the state the period opens with."""
    try:
        from collector.scoring.slots import DEFAULT_MAX_AGE
    except ImportError:
        DEFAULT_MAX_AGE = {"": 3 * 3600.0}
    return timedelta(seconds=max(max(DEFAULT_MAX_AGE.values()), 3 * interval_s) + 2 * interval_s)


def _tee(observations, series: dict, t0: float):
    """Yield 5-field observations (POSIX seconds, the engine's fast path) while keeping per-series counts of
    the period itself; rows before ``t0`` only tell the engine the opening state."""
    ok, warn = OK, WARN  # locals in the loop over every stored result
    for t, check, target, status in observations:
        if t >= t0:
            st = series.get((check, target))
            if st is None:
                st = series[(check, target)] = Series(check, target)
            if status in st.counts:
                st.counts[status] += 1
            if status != ok and status != warn:
                if st.first_problem is None or t < st.first_problem:
                    st.first_problem = t
                if st.last_problem is None or t > st.last_problem:
                    st.last_problem = t
            if st.last_at is None or t >= st.last_at:
                st.last_at, st.last_status = t, status
        yield (t, check, target, status, None)


def _dt(ts: float | None):
    return None if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc)


def _finish(series: dict) -> None:
    for st in series.values():
        st.first_problem, st.last_problem, st.last_at = _dt(st.first_problem), _dt(st.last_problem), _dt(st.last_at)


def build_sheet(profile_name: str, observations, period: Period, interval_s: float,
                silent_after: float | None = None, known_from=None, now=None, level: str | None = None) -> PointSheet:
    """Score one point; ``observations`` streams (POSIX seconds, check, target, status) rows from
    ``period.start - lookback(interval_s)`` on, each (check, target) in time order."""
    series: dict[tuple[str, str], Series] = {}
    stream = _tee(observations, series, period.start.timestamp())
    from collector.scoring import load_profiles, score_period

    profiles, note = load_profiles(), f"未找到评价标准“{profile_name}”（configs/standards/{profile_name}.yaml）。"
    profile = profiles.get(profile_name)
    if profile is None:
        for _ in stream:
            pass
        _finish(series)
        return PointSheet(profile_name, profile_name, 0, 0, 0, 0, [], None, series, notes=[note])
    scored = score_period(profile, stream, period.start, period.end, interval=interval_s, silent_after=silent_after,
                          known_from=known_from, now=now, level=level)
    _finish(series)
    by_id = {i.id: i for i in profile.items}
    rows = []
    for it in scored.items:
        spec = by_id.get(it.id)
        indicator = (spec.indicator if spec and spec.indicator else "") or ""
        basis = item_basis(it, spec, level)
        rows.append(Row(it.category, indicator, it.title, it.points, it.earned, basis, it.state, it.id))
    notes = []
    if scored.inferred_points:
        notes.append(f"其中 {scored.inferred_points:g} 分为推定分值：文件未印出该项分值，依据见各项说明。")
    if scored.not_applicable_points:
        notes.append(f"{scored.not_applicable_points:g} 分的评价项不适用于本级服务点，不计入满分。")
    if scored.vetoed:
        notes.append("一票否决：本期总分计 0。")
    if any(i.hold_source == HOLD_POLICY for i in scored.items):
        notes.append("达标时段占比的要求（如 ≥95%）为 pointwatch 的评分策略，标准原文未规定。")
    # The sheet's own totals: items not applicable to this point's level are out of them.
    return PointSheet(profile.name, profile.title, scored.total, scored.automatic_points,
                      scored.manual_points, scored.earned, rows, scored.reported_share, series, notes=notes)


def check_label(check: str, target: str) -> str:
    if family_of(check) == "device":
        kind = check.split(".", 1)[1]
        return f"{DEVICE_LABEL.get(kind, kind)}：{target}"
    name = SHEET_CHECK_LABEL.get(check, check)
    return f"{name}（{target}）" if target and target not in ("本机", "enrolment") else name


def series_cells(s: Series) -> list[str]:
    """[检查项, 正常/警告/不合格/出错, 正常占比, 首次/末次问题, 最后状态, 最近问题说明] for tables."""
    share = "—" if s.ok_share is None else f"{s.ok_share * 100:.2f}%"
    problems = "无" if s.first_problem is None else f"{local(s.first_problem)} / {local(s.last_problem)}"
    c = s.counts
    return [check_label(s.check, s.target), f"{c['ok']}/{c['warn']}/{c['fail']}/{c['error']}", share, problems,
            STATUS_LABEL.get(s.last_status or "", "—"), s.messages.get("last_problem") or ""]
