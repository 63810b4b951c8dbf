"""Registering and changing points one at a time, and importing an uploaded spreadsheet, for an admin of a
region (the web pages and the JSON API).

One point goes through the very check a spreadsheet row does (collector/registry/spreadsheet.py: validate),
so a form, an API body and a file cannot disagree on what a valid point is. An upload is read from its
bytes, checked row by row, and written all or nothing (collector/registry/importing.py); a point of
another region neither shows nor can be overwritten.
"""

from __future__ import annotations

from collector.registry import importing
from collector.registry.regions import RegionError, is_within, normalize_path
from collector.registry.spreadsheet import ImportError_, PointRow, RowProblem, read_upload, validate
from collector.store import StoreError
from collector.store import points as points_repo
from collector.store.audit import Actor

MAX_UPLOAD_ROWS = 20_000
# The form's fields, as the spreadsheet's columns: what the page labels them.
FIELD_CN = {"code": "编码", "name": "名称", "region": "区域", "profile": "评价标准", "address": "地址",
            "expected_devices": "应配设备", "report_interval_s": "上报间隔（秒）"}


class PointInvalid(Exception):
    """One point's problems, by field: {field: what is wrong}."""

    def __init__(self, problems: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in problems.items()))
        self.problems = problems


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):  # expected_devices from JSON: [{"kind": "printer", "count": 2}]
        return ", ".join(f"{d.get('kind')}:{d.get('count', 1)}" if isinstance(d, dict) else str(d) for d in value)
    return str(value).strip()


def check_point(fields: dict) -> PointRow:
    """The point these fields describe, checked as a spreadsheet row is; PointInvalid naming each field."""
    record = {column: _text(fields.get(column)) for column in FIELD_CN}
    try:
        (point,) = validate([(1, record)])
    except ImportError_ as exc:
        raise PointInvalid({p.column: p.problem for p in exc.problems}) from None
    return point


def outside_scope(region: str, scope: str) -> str | None:
    """What is wrong with a row's region for an importer confined to ``scope`` (None: nothing, or the
    region is malformed, which validate reports)."""
    try:
        region = normalize_path(region)
    except RegionError:
        return None
    return None if is_within(region, scope) else f"“{region}”不在您的管辖区域“{scope}”内"


def _checked(fields: dict, scope: str) -> PointRow:
    outside = outside_scope(_text(fields.get("region")), scope)
    try:
        point = check_point(fields)
    except PointInvalid as exc:
        raise PointInvalid({**exc.problems, **({"region": outside} if outside else {})}) from None
    if outside:
        raise PointInvalid({"region": outside})
    return point


def register(store, fields: dict, actor: Actor, scope: str) -> dict:
    """A new point within ``scope`` (audited); PointInvalid when a field is wrong or the code is taken."""
    return _save(store, _checked(fields, scope), actor, scope, create=True)


def edit(store, code: str, fields: dict, actor: Actor, scope: str) -> dict:
    """Change a point of ``scope`` (its code stays); StoreError ``unknown_point`` when it is not there."""
    return _save(store, _checked({**fields, "code": code}, scope), actor, scope, create=False)


def _save(store, point: PointRow, actor: Actor, scope: str, create: bool) -> dict:
    try:
        return points_repo.save_point(store, point, actor, scope, create=create)
    except StoreError as exc:
        if exc.code == "point_exists":
            raise PointInvalid({"code": f"编码“{point.code}”已被使用（修改已有的点请点“编辑”）"}) from None
        if exc.code == "region_outside_scope":
            raise PointInvalid({"region": f"“{point.region}”不在您的管辖区域“{scope}”内"}) from None
        if exc.code == "unknown_point":
            raise StoreError("unknown_point", f"没有服务点“{point.code}”") from None
        raise


def import_upload(store, filename: str, data: bytes, actor: Actor, scope: str, dry_run: bool = False) -> dict:
    """Check an uploaded CSV/XLSX row by row, then write it all in one transaction, or nothing.

    Returns the counts ({"rows", "created", "updated"}; ``dry_run``: only {"rows"}, nothing written);
    raises ImportError_ with every problem found (``第 N 行，列 X：问题``)."""
    rows = read_upload(filename, data, max_rows=MAX_UPLOAD_ROWS)
    if not rows:
        raise ImportError_([RowProblem(2, "-", "文件只有表头，没有服务点")])
    outside = [RowProblem(number, "region", problem) for number, rec in rows
               if (problem := outside_scope(rec.get("region", ""), scope))]
    try:
        points = validate(rows)
    except ImportError_ as exc:  # every problem of the file at once, in row order
        raise ImportError_(sorted(exc.problems + outside, key=lambda p: p.row)) from None
    if outside:
        raise ImportError_(outside)
    if dry_run:
        return {"rows": len(points), "dry_run": True}
    return importing.import_points(store, points, actor, source_name=f"upload:{filename}"[:200], scope=scope)
