"""Importing a point registry within the importer's own region: the rule, then the store's one transaction."""

from __future__ import annotations

from collector.policy import service
from collector.policy.documents import PolicyError
from collector.registry.regions import is_within
from collector.registry.spreadsheet import ImportError_, RowProblem
from collector.store import StoreError, registry
from collector.store.audit import Actor


def import_points(store, points, actor: Actor, source_name: str = "", scope: str = "/") -> dict:
    """Create or update validated PointRows, all or nothing; every row and every existing point it updates
    must lie within ``scope``. Returns counts; raises ImportError_ naming the rows refused."""
    outside = [p for p in points if not is_within(p.region, scope)]
    if outside:
        raise ImportError_([RowProblem(p.row, "region", f"“{p.region}”不在您的管辖区域“{scope}”内")
                            for p in outside])
    try:
        counts = registry.import_points(store, points, actor, source_name, scope)
    except StoreError as exc:
        if exc.code != "code_outside_scope":
            raise
        row = next(p.row for p in points if p.code == str(exc))
        raise ImportError_([RowProblem(row, "code", f"编码“{exc}”已属于您管辖区域以外的服务点")]) from None
    # Registered devices are part of the points' effective policies: issue their new digests.
    try:
        counts["policies_issued"] = service.reissue(store, [p.code for p in points])
    except PolicyError as exc:  # the devices passed the agent's validator; a merge that does not is named
        counts["policy_problem"] = str(exc)
    return counts
