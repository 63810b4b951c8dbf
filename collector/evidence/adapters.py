"""Seams to parts that land separately (alerts, the audit log); each degrades in a way the bundle states.

Alerts: when the store offers ``alerts_in_period(code, start, end)`` / ``silences_in_period(code, start,
end)`` (iterables of JSON-able dicts) they are written; otherwise the files are empty and the manifest
says why. Audit: ``store.record(Actor, action, target, details, region_path)`` when the audit module is
there; otherwise an entry is appended to ``audit_log`` with the same hash-chain rule as reports.
"""

from __future__ import annotations

import json

ALERTS_MISSING = ("alerts are not recorded by this collector version; alerts.jsonl and silences.jsonl are "
                  "empty, not a statement that nothing fired")


def alerts_and_silences(store, code: str, start, end) -> tuple[bool, object, object]:
    alerts = getattr(store, "alerts_in_period", None)
    silences = getattr(store, "silences_in_period", None)
    if alerts is None:
        return False, iter(()), iter(())
    return True, alerts(code, start, end), (silences(code, start, end) if silences else iter(()))


def audit_export(store, actor: str, source: str | None, target: str, details: dict, region_path: str) -> None:
    record = getattr(store, "record", None)
    if record is not None:
        from collector.store.audit import Actor

        record(Actor(actor, source), "evidence.export", target, details, region_path)
        return
    _append_plain(store, actor, source, target, details)


def _append_plain(store, actor: str, source: str | None, target: str, details: dict) -> None:
    from sqlalchemy import select

    from collector.evidence.chain import chain_digest
    from collector.store import models as m
    from collector.store import utcnow

    with store.session() as s:
        head = s.execute(select(m.AuditEntry.digest).order_by(m.AuditEntry.id.desc()).limit(1)).scalar() or ""
        at = utcnow()
        body = json.dumps({"at": at.isoformat(), "actor": actor, "action": "evidence.export", "target": target,
                           "details": details, "source": source}, sort_keys=True, ensure_ascii=False,
                          separators=(",", ":"))
        s.add(m.AuditEntry(at=at, actor=actor[:120], action="evidence.export", target=target, details=details,
                           source=source, prev_digest=head, digest=chain_digest(head, body)))
