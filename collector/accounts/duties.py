"""The duty split of the 智慧医保 standard (多级权限分配: 操作、管理、监督 by different people).

The exact rules (issue 18, item 7), for users and API tokens alike:

1. **Every principal of a person names that person.** A user, and a token of any role but ``agent``, is
   created with a ``person``: required from an admin through the API and from the command line; only
   the collector itself (``SYSTEM``: the demo, tests, built-in set-up) may leave a user's person to
   default to its username. An agent's token is a machine's and names none.
2. **One person is never admin and reviewer of overlapping regions**: not of the same region, nor of one
   above or beneath the other. A new user or token that would make such a pair is refused
   (``duty_conflict``), whichever comes second; disabled users and revoked tokens hold nothing, so
   enabling a user is checked again (collector/accounts/users.py).
3. **An admin cannot mint a role it could not hold beside its own.** When the creator is an admin
   principal (an API call), the new principal must not be a reviewer of a region overlapping the
   creator's own admin region unless it is for *another* person: its ``person`` is named and differs
   from the creator's. A creator whose own person is unknown (an older token made without one) cannot
   create such reviewers at all (``duty_self``). A principal for the creator's own person in the
   conflicting role is refused by rule 2 as well, since the creator's own row holds the admin role.

What this cannot do is check that the named person is real: an admin who names an invented person is
then on the record for it (the ``user.create``/``token.create`` audit entry names both the admin and the
person), which is the point of the split — the claim is the admin's, signed with their name.
"""

from __future__ import annotations

from collector.registry.regions import is_within
from collector.store import StoreError, TokenInfo, people
from collector.store.audit import SYSTEM, Actor

CONFLICTING = {"admin": "reviewer", "reviewer": "admin"}
_ROLE_CN = {"admin": "管理员", "reviewer": "评审员", "viewer": "查看员", "agent": "代理"}


def overlap(a: str, b: str) -> bool:
    return is_within(a, b) or is_within(b, a)


def check(store, person: str | None, role: str, region: str) -> None:
    """Rule 2: raise StoreError ``duty_conflict`` when ``person`` taking ``role`` in ``region`` breaks it."""
    other = CONFLICTING.get(role)
    if not person or not other:
        return
    for path in people.regions_held(store, person, other):
        if overlap(path, region):
            raise StoreError("duty_conflict",
                             f"“{person}”已是“{path}”的{_ROLE_CN[other]}，不能再担任“{region}”的{_ROLE_CN[role]}"
                             "（操作、管理、监督分离：管理员与评审员不得为同一人）")


def check_new(store, person: str | None, role: str, region: str, actor: Actor = SYSTEM,
              creator: TokenInfo | None = None) -> None:
    """Rules 1-3 for a principal about to be created by ``actor`` (``creator`` when it is an API caller)."""
    if role != "agent" and not person and actor != SYSTEM:
        raise StoreError("person_required", "须注明此账号或令牌代表的人员（person），以落实操作、管理、监督分离")
    if creator is not None and creator.role in CONFLICTING and CONFLICTING[creator.role] == role \
            and overlap(creator.region_path, region):
        if not creator.person:
            raise StoreError("duty_self", f"您的{_ROLE_CN[creator.role]}身份未注明人员，不能为本区域创建"
                                          f"{_ROLE_CN[role]}（操作、管理、监督分离）")
        if person == creator.person:
            raise StoreError("duty_conflict", f"不能为自己（“{person}”）创建与本区域{_ROLE_CN[creator.role]}"
                                              f"身份冲突的{_ROLE_CN[role]}账号或令牌（操作、管理、监督分离）")
    check(store, person, role, region)
