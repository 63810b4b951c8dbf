"""Alert tables, on the store's own ``Base`` so ``create_all`` and Alembic see them.

One row per alert episode. ``open_key`` holds the fingerprint while the episode is open (pending or
firing) and NULL once it is resolved: the unique constraint on it is what keeps one open alert per
rule+point+target even with several collectors on one database (NULLs never collide), while resolved
episodes stay as history for evidence.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from collector.store.models import Base, BigId


class Alert(Base):
    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    open_key: Mapped[str | None] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(40))
    point_code: Mapped[str] = mapped_column(String(40))
    region_path: Mapped[str] = mapped_column(String(400))
    check: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200))
    severity: Mapped[str] = mapped_column(String(10))
    state: Mapped[str] = mapped_column(String(10))  # pending, firing, resolved
    summary: Mapped[str] = mapped_column(Text)  # Chinese: what is wrong
    value: Mapped[float | None]
    pending_since: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # fault first seen
    fired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Receive time of the last report counted as an observation: a re-evaluation without a newer report
    # (timer, duplicate batch, second collector) never moves the streaks.
    observed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    fail_streak: Mapped[int] = mapped_column(Integer, default=0)
    ok_streak: Mapped[int] = mapped_column(Integer, default=0)
    notified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # firing message queued
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    __table_args__ = (UniqueConstraint("open_key", name="uq_alerts_open_key"),
                      Index("ix_alerts_point_state", "point_code", "state"),
                      Index("ix_alerts_state_region", "state", "region_path"))


class Silence(Base):
    __tablename__ = "alert_silences"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Matchers: an empty one matches anything; region matches the point's region and beneath it.
    region_path: Mapped[str] = mapped_column(String(400), default="/")
    point_code: Mapped[str | None] = mapped_column(String(40))
    rule: Mapped[str | None] = mapped_column(String(40))
    target: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    expired_by: Mapped[str | None] = mapped_column(String(120))


class Notification(Base):
    """The outbox of messages to notifiers: written in the transaction that changes the alert, so a
    restart loses nothing; claimed with FOR UPDATE SKIP LOCKED so each is sent by one collector."""

    __tablename__ = "alert_notifications"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(BigId, index=True)
    notifier: Mapped[str] = mapped_column(String(80))
    event: Mapped[str] = mapped_column(String(10))  # firing, resolved
    payload: Mapped[dict] = mapped_column(JSON)  # the message as composed when queued
    status: Mapped[str] = mapped_column(String(10))  # queued, sending, sent, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (Index("ix_alert_notifications_due", "status", "next_attempt_at"),)
