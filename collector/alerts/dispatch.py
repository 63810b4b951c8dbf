"""Sending queued notifications: claim, send, retry with backoff, count.

Claiming marks a row ``sending`` with a lease in its own short transaction; on PostgreSQL the claim uses
``FOR UPDATE SKIP LOCKED``, so collectors sharing a database each take different rows and a message is
sent once. A sender that dies mid-send leaves a lease that runs out, and the row is sent again (at least
once beats never for an alert).
"""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select

from collector import selfmetrics
from collector.alerts.models import Notification
from collector.alerts.notifiers import NotifyError

log = logging.getLogger("pointwatch.alerts")


def claim(engine, now: datetime, limit: int = 16) -> list[tuple[int, str, dict, int]]:
    """Take up to ``limit`` due rows: [(id, notifier, payload, attempt number)]."""
    store = engine.store
    lease = timedelta(seconds=engine.config.lease_s)
    with store.session() as s:
        stmt = (select(Notification)
                .where(or_(and_(Notification.status == "queued", Notification.next_attempt_at <= now),
                           and_(Notification.status == "sending", Notification.lease_until < now)))
                .order_by(Notification.id).limit(limit))
        if not store.is_sqlite:
            stmt = stmt.with_for_update(skip_locked=True)
        rows = list(s.scalars(stmt))
        for row in rows:
            row.status, row.lease_until, row.attempts = "sending", now + lease, row.attempts + 1
        return [(r.id, r.notifier, r.payload, r.attempts) for r in rows]


def deliver(engine, job: tuple[int, str, dict, int]) -> str:
    """Send one claimed notification and record the outcome: sent, retry or failed."""
    nid, name, payload, attempt = job
    notifier = engine.notifiers.get(name)
    error, retryable = None, False
    if notifier is None:
        error = f"notifier '{name}' is no longer configured"
    else:
        try:
            notifier.send(payload)
        except NotifyError as exc:
            error, retryable = str(exc), exc.retryable
        except Exception as exc:  # a bug in one notifier must not stop the others
            log.exception("notifier_crashed notifier=%s", name)
            error, retryable = f"{type(exc).__name__}: {exc}", True
    now = engine.clock()
    if error is None:
        outcome = "sent"
    elif retryable and notifier is not None and attempt < notifier.cfg.max_attempts:
        outcome = "retry"
    else:
        outcome = "failed"
    with engine.store.session() as s:
        row = s.get(Notification, nid)
        if row is not None:
            row.lease_until = None
            if outcome == "sent":
                row.status, row.sent_at, row.last_error = "sent", now, None
            elif outcome == "retry":
                cfg = notifier.cfg
                delay = min(cfg.backoff_s * 2 ** (attempt - 1), cfg.backoff_max_s) * random.uniform(0.8, 1.2)
                row.status, row.last_error = "queued", error[:2000]
                row.next_attempt_at = now + timedelta(seconds=delay)
            else:
                row.status, row.last_error = "failed", error[:2000]
    selfmetrics.NOTIFICATIONS.labels(name, outcome).inc()
    if outcome == "sent":
        log.info("notification_sent notifier=%s event=%s point=%s rule=%s attempt=%d", name, payload.get("event"),
                 payload.get("point_code"), payload.get("rule"), attempt)
    else:
        log.warning("notification_%s notifier=%s point=%s rule=%s attempt=%d error=%s", outcome, name,
                    payload.get("point_code"), payload.get("rule"), attempt, error)
    return outcome


def queue_depth(store) -> int:
    with store.session() as s:
        depth = s.scalar(select(func.count()).select_from(Notification).where(
            Notification.status.in_(("queued", "sending")))) or 0
    selfmetrics.NOTIFICATION_QUEUE.set(depth)
    return depth


def dispatch_all(engine) -> list[str]:
    """Send everything due now, one after another (tests and the CLI; the worker uses a pool)."""
    outcomes = []
    while jobs := claim(engine, engine.clock()):
        outcomes.extend(deliver(engine, job) for job in jobs)
    queue_depth(engine.store)
    return outcomes
