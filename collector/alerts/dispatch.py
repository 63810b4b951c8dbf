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

from collector.alerts.notifiers import NotifyError
from collector.alerts.notifybase import error_class
from collector.metrics import selfmetrics
from collector.store import alerts as alert_rows

log = logging.getLogger("pointwatch.alerts")


def claim(engine, now: datetime, limit: int = 16) -> list[tuple]:
    """Take up to ``limit`` due rows: [(id, notifier name, payload, attempt number, queued at)]."""
    return alert_rows.claim_notifications(engine.store, now, timedelta(seconds=engine.config.lease_s), limit)


def deliver(engine, job: tuple) -> str:
    """Send one claimed notification and record the outcome: sent, retry or failed."""
    nid, name, payload, attempt, queued_at = job
    notifier = engine.notifiers.get(name)
    kind = notifier.type if notifier else "unknown"
    error, retryable, reason = None, False, "rejected"
    if notifier is None:
        error = f"notifier '{name}' is no longer configured"
    else:
        try:
            notifier.send(payload)
        except NotifyError as exc:
            error, retryable, reason = str(exc), exc.retryable, exc.reason
        except Exception as exc:  # a bug in one notifier must not stop the others
            log.exception("notifier_crashed notifier=%s", name)
            error, retryable, reason = f"notifier crashed ({error_class(exc)})", True, "connection"
    now = engine.clock()
    if error is None:
        outcome = "sent"
    elif retryable and notifier is not None and attempt < notifier.cfg.max_attempts:
        outcome = "retry"
    else:
        outcome = "failed"
    next_attempt_at = None
    if outcome == "retry":
        cfg = notifier.cfg
        delay = min(cfg.backoff_s * 2 ** (attempt - 1), cfg.backoff_max_s) * random.uniform(0.8, 1.2)
        next_attempt_at = now + timedelta(seconds=delay)
    alert_rows.finish_notification(engine.store, nid, outcome, now, error, next_attempt_at)
    if outcome == "sent":
        selfmetrics.NOTIFICATIONS_SENT.labels(kind).inc()
        # queued_at is when the alert fired (or resolved): the delay people feel.
        selfmetrics.NOTIFY_SECONDS.labels(kind).observe(max(0.0, (now - _aware(queued_at)).total_seconds()))
    else:
        selfmetrics.NOTIFIER_FAILURES.labels(kind, reason).inc()
    if outcome == "sent":
        log.info("notification_sent notifier=%s event=%s point=%s rule=%s attempt=%d", name, payload.get("event"),
                 payload.get("point_code"), payload.get("rule"), attempt)
    else:
        log.warning("notification_%s notifier=%s point=%s rule=%s attempt=%d error=%s", outcome, name,
                    payload.get("point_code"), payload.get("rule"), attempt, error)
    return outcome


def queue_depth(engine) -> int:
    """Set the outbox gauge (by notifier kind) and return the total waiting."""
    rows = alert_rows.outbox_counts(engine.store)
    by_kind = dict.fromkeys(selfmetrics.NOTIFIER_KINDS, 0)
    for name, n in rows:
        notifier = engine.notifiers.get(name)
        by_kind[notifier.type if notifier else "unknown"] = by_kind.get(notifier.type if notifier else "unknown", 0) + n
    for kind, n in by_kind.items():
        selfmetrics.NOTIFIER_OUTBOX.labels(kind).set(n)
    return sum(by_kind.values())


def _aware(ts: datetime) -> datetime:
    from datetime import timezone

    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def dispatch_all(engine) -> list[str]:
    """Send everything due now, one after another (tests and the CLI; the worker uses a pool)."""
    outcomes = []
    while jobs := claim(engine, engine.clock()):
        outcomes.extend(deliver(engine, job) for job in jobs)
    queue_depth(engine)
    return outcomes
