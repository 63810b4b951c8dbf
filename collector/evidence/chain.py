"""The per-point hash chain of stored reports, checked the same way at export and at offline verification.

Each stored report carries ``prev_digest`` (the digest of the point's report stored before it) and
``digest = sha256(prev_digest + "\\n" + body)`` over its canonical JSON body. Within a period the first
report's ``prev_digest`` links to history before the period (the chain's *tail*); the last report's digest
is the chain's *head*. Both go into the signed manifest, so a later bundle of an adjacent period can be
joined to this one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

MAX_BREAKS = 100  # named one by one; beyond this only counted

LINK = "prev_digest does not link to the previous report's digest (a report was removed, inserted or reordered)"
EDITED = "digest does not match the report body (the report was changed after it was stored)"
LINK_CN = "与上一条报告的摘要不衔接（报告被删除、插入或调换了顺序）"
EDITED_CN = "摘要与报告内容不符（报告入库后被修改）"


def chain_digest(prev_digest: str, body: str) -> str:
    return hashlib.sha256((prev_digest + "\n" + body).encode("utf-8")).hexdigest()


@dataclass
class ChainWalk:
    """Feed reports in storage order; collects where the chain breaks."""

    reports: int = 0
    tail: str | None = None
    head: str | None = None
    breaks: list[dict] = field(default_factory=list)
    break_count: int = 0

    def feed(self, line: int, report_id: str | None, prev_digest: str, digest: str, body: str) -> None:
        if self.reports == 0:
            self.tail = prev_digest
        elif prev_digest != self.head:
            self._break(line, report_id, "link", LINK)
        if chain_digest(prev_digest, body) != digest:
            self._break(line, report_id, "edited", EDITED)
        self.head = digest
        self.reports += 1

    def _break(self, line: int, report_id: str | None, kind: str, problem: str) -> None:
        self.break_count += 1
        if len(self.breaks) < MAX_BREAKS:
            self.breaks.append({"line": line, "report_id": report_id, "kind": kind, "problem": problem})

    @property
    def intact(self) -> bool:
        return self.break_count == 0

    def summary(self) -> dict:
        return {"reports": self.reports, "tail": self.tail, "head": self.head, "intact": self.intact,
                "break_count": self.break_count, "breaks": list(self.breaks)}
