"""The append-only audit log: every non-agent write and every export, hash-chained like the reports.

Rows are only ever inserted (no API updates or deletes them). Each row's digest covers its predecessor's
digest and its own canonical content, and ``prev_digest`` is unique, so two appenders cannot fork the chain:
on PostgreSQL an advisory transaction lock serialises appenders across collectors, on SQLite the store's
write lock does, and the unique constraint is the backstop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import select, text

from collector.evidence.chain import chain_digest as entry_digest
from collector.registry.regions import normalize_path
from collector.store import models as m
from collector.store.regionscope import scoped

AUDIT_LOCK = 0x61756469  # "audi": advisory lock key for the audit chain head
GENESIS = ""


@dataclass(frozen=True)
class Actor:
    """Who did it and from where: "user:alice" / "token:12" / "cli:root", and an address or host."""

    name: str
    source: str | None = None


SYSTEM = Actor("system")  # changes made by the collector itself or on its command line


def _ms(ts: datetime) -> datetime:
    ts = ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
    return ts.astimezone(timezone.utc).replace(microsecond=ts.microsecond // 1000 * 1000)


def entry_body(at: datetime, actor: str, action: str, target: str | None, details, source: str | None,
               region_path: str) -> str:
    from agent.wire import rfc3339

    return json.dumps({"at": rfc3339(at), "actor": actor, "action": action, "target": target,
                       "details": details, "source": source, "region": region_path},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def append(session, actor: Actor, action: str, target: str | None = None, details: dict | None = None,
           region_path: str = "/") -> m.AuditEntry:
    """Append one entry inside the caller's transaction, so the action and its record commit together."""
    from collector.store import utcnow

    if session.bind.dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": AUDIT_LOCK})
    head = session.execute(select(m.AuditEntry.digest).order_by(m.AuditEntry.id.desc()).limit(1)).scalar()
    prev = head or GENESIS
    at = _ms(utcnow())
    region_path = normalize_path(region_path)
    details = json.loads(json.dumps(details or {}, ensure_ascii=False, default=str))
    name, source = actor.name[:120], (actor.source or "")[:120] or None
    body = entry_body(at, name, action, target, details, source, region_path)
    row = m.AuditEntry(at=at, actor=name, action=action, target=target, details=details, source=source,
                       region_path=region_path, prev_digest=prev, digest=entry_digest(prev, body))
    session.add(row)
    session.flush()
    return row


def record(store, actor: Actor, action: str, target: str | None = None, details: dict | None = None,
           region_path: str = "/") -> None:
    """Append an entry in a transaction of its own (exports, logins: actions with no other write)."""
    with store.write_session() as s:
        append(s, actor, action, target, details, region_path)


def audit_entries(store, scope: str = "/", limit: int = 200, before_id: int | None = None,
                  action: str | None = None) -> list[dict]:
    with store.session() as s:
        stmt = select(m.AuditEntry)
        stmt = scoped(stmt, m.AuditEntry.region_path, scope)
        if before_id:
            stmt = stmt.where(m.AuditEntry.id < before_id)
        if action:
            stmt = stmt.where(m.AuditEntry.action == action)
        rows = s.scalars(stmt.order_by(m.AuditEntry.id.desc()).limit(limit)).all()
        return [audit_json(r) for r in rows]


def audit_json(r: m.AuditEntry) -> dict:
    from agent.wire import rfc3339

    return {"id": r.id, "at": rfc3339(r.at), "actor": r.actor, "action": r.action, "target": r.target,
            "details": r.details, "source": r.source, "region": r.region_path, "prev_digest": r.prev_digest,
            "digest": r.digest}


@dataclass
class ChainCheck:
    ok: bool
    entries: int
    first_bad_id: int | None = None
    problem: str | None = None


def verify_audit(store, batch: int = 5000) -> ChainCheck:
    """Walk the whole chain in id order, recomputing every digest; the first broken link is reported."""
    prev, count, last_id = GENESIS, 0, 0
    with store.session() as s:
        while True:
            rows = s.scalars(select(m.AuditEntry).where(m.AuditEntry.id > last_id)
                             .order_by(m.AuditEntry.id).limit(batch)).all()
            if not rows:
                return ChainCheck(True, count)
            for r in rows:
                if r.prev_digest != prev:
                    return ChainCheck(False, count, r.id, "prev_digest does not match the entry before it "
                                                          "(an entry was removed or inserted)")
                body = entry_body(r.at, r.actor, r.action, r.target, r.details, r.source, r.region_path)
                if entry_digest(prev, body) != r.digest:
                    return ChainCheck(False, count, r.id, "digest does not match the content (entry edited)")
                prev, count, last_id = r.digest, count + 1, r.id
