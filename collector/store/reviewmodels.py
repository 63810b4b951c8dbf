"""Tables of the reviews (评审): a reviewer's scoring of a point for a period, and the files it cites.

A review row freezes the automatic part when it is opened (``frozen``: the sheet as the monitor computed it
and the period's hash-chain digests); the reviewer's entries are rows of ``review_items`` (one per item,
so two fields saved at once never overwrite each other). Submitting stores the signed bundle as a blob and
the row never changes again; a correction is a new row whose ``replaces_id`` names the old one.

Attachments and submitted bundles are content-addressed: ``blobs`` is keyed by the SHA-256 of the bytes.
Kept apart from models.py (which it extends: the same ``Base``), registered by the migrations' env.py.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, Float, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from collector.store.models import Base, BigId, UtcDateTime


class Review(Base):
    __tablename__ = "reviews"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    point_code: Mapped[str] = mapped_column(String(40))
    region_path: Mapped[str] = mapped_column(String(400), index=True)
    profile: Mapped[str] = mapped_column(String(60))
    period_start: Mapped[datetime] = mapped_column(UtcDateTime())
    period_end: Mapped[datetime] = mapped_column(UtcDateTime())
    given_from: Mapped[str] = mapped_column(String(40))
    given_to: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(12))  # draft | submitted
    reviewer: Mapped[str] = mapped_column(String(120))  # the audit log's actor name (user:alice, token:12)
    identity: Mapped[dict] = mapped_column(JSON)  # who, as authenticated: actor, person, role, region, via
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime())
    submitted_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    replaces_id: Mapped[int | None] = mapped_column(BigId)
    version: Mapped[int] = mapped_column(Integer, default=0)  # bumped by every entry and attachment
    frozen: Mapped[dict] = mapped_column(JSON)
    bundle_sha256: Mapped[str | None] = mapped_column(String(64))
    manifest_sha256: Mapped[str | None] = mapped_column(String(64))
    __table_args__ = (Index("ix_reviews_point_period", "point_code", "period_start", "period_end"),)


class ReviewItem(Base):
    __tablename__ = "review_items"
    review_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    item_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    score: Mapped[float] = mapped_column(Float)
    note: Mapped[str] = mapped_column(Text, default="")
    veto: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str | None] = mapped_column(Text)  # an automatic item's verdict overridden on site: why
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ReviewAttachment(Base):
    __tablename__ = "review_attachments"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    review_id: Mapped[int] = mapped_column(BigId, index=True)
    item_id: Mapped[str | None] = mapped_column(String(80))
    sha256: Mapped[str] = mapped_column(String(64))
    media_type: Mapped[str] = mapped_column(String(40))
    size: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))  # as uploaded, for people; the bytes decide the type
    added_at: Mapped[datetime] = mapped_column(UtcDateTime())
    __table_args__ = (UniqueConstraint("review_id", "sha256", name="uq_review_attachment"),)


class Blob(Base):
    __tablename__ = "blobs"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    media_type: Mapped[str] = mapped_column(String(40))
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


TABLES = (Review, ReviewItem, ReviewAttachment, Blob)
