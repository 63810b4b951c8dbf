"""The duty split of the 智慧医保 standard (多级权限分配: 操作、管理、监督 by different people).

Every user and every personal token names a ``person`` (for users it defaults to the username, and a
username holds exactly one role). One person may not be ``admin`` of a region and ``reviewer`` of the same
region, of a region above it or of one beneath it; a new user or token that would make such a pair is
refused, whichever of the two comes second.
"""

from __future__ import annotations

from collector.registry.regions import is_within
from collector.store import StoreError, people

CONFLICTING = {"admin": "reviewer", "reviewer": "admin"}
_ROLE_CN = {"admin": "管理员", "reviewer": "评审员", "viewer": "查看员", "agent": "代理"}


def check(store, person: str | None, role: str, region: str) -> None:
    """Raise StoreError ``duty_conflict`` when ``person`` taking ``role`` in ``region`` breaks the split."""
    other = CONFLICTING.get(role)
    if not person or not other:
        return
    for path in people.regions_held(store, person, other):
        if is_within(path, region) or is_within(region, path):
            raise StoreError("duty_conflict",
                             f"“{person}”已是“{path}”的{_ROLE_CN[other]}，不能再担任“{region}”的{_ROLE_CN[role]}"
                             "（操作、管理、监督分离：管理员与评审员不得为同一人）")
