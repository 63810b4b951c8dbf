"""The history tables beside ``results``: what each report carried, the state each key's change test
compares against, and the hourly roll-ups.

Ingest stores a results row only when a (check, target) says something new (collector/ingest/changes.py
decides what is new); the samples in between are the reports that carried the key. So a report names its
keyset (the sorted (check, target)s it carried, kept once per point and content), and a key's status in any
report is that of its latest results row at or before the report, in storage order (reports.id). Kept
apart from models.py (which it extends: the same ``Base``), registered by the migrations' env.py.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from collector.store.models import Base, BigId, UtcDateTime


class Keyset(Base):
    """A set of (check, target)s some report of the point carried; ``digest``: sha256 of its members."""

    __tablename__ = "keysets"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    point_code: Mapped[str] = mapped_column(String(40))
    digest: Mapped[str] = mapped_column(String(64))
    __table_args__ = (UniqueConstraint("point_code", "digest", name="uq_keysets_point_digest"),)


class KeysetMember(Base):
    __tablename__ = "keyset_members"
    keyset_id: Mapped[int] = mapped_column(BigId, ForeignKey("keysets.id", ondelete="CASCADE"), primary_key=True)
    check: Mapped[str] = mapped_column(String(64), primary_key=True)
    target: Mapped[str] = mapped_column(String(200), primary_key=True)


class ResultTail(Base):
    """What the last results row of a key says, in storage order: what the next sample is compared with.

    Unlike latest_results ("now": a current report's sample, and a backlog report's only where it is newer by
    observed time), a backlog report moves it."""

    __tablename__ = "result_tails"
    point_code: Mapped[str] = mapped_column(String(40), primary_key=True)
    check: Mapped[str] = mapped_column(String(64), primary_key=True)
    target: Mapped[str] = mapped_column(String(200), primary_key=True)
    status: Mapped[str] = mapped_column(String(8))
    message: Mapped[str] = mapped_column(Text)
    value: Mapped[float | None] = mapped_column(Float)
    details: Mapped[str] = mapped_column(Text)  # the JSON text the results row stored
    written_at: Mapped[datetime] = mapped_column(UtcDateTime())  # received_at of that row
    report_pk: Mapped[int] = mapped_column(BigInteger)


class ResultHourly(Base):
    """Hourly roll-ups of results (by receive hour) for long charts; kept after raw results are pruned."""

    __tablename__ = "result_hourly"
    point_code: Mapped[str] = mapped_column(String(40), primary_key=True)
    check: Mapped[str] = mapped_column(String(64), primary_key=True)
    target: Mapped[str] = mapped_column(String(200), primary_key=True)
    hour: Mapped[datetime] = mapped_column(UtcDateTime(), primary_key=True)
    n_ok: Mapped[int] = mapped_column(Integer, default=0)
    n_warn: Mapped[int] = mapped_column(Integer, default=0)
    n_fail: Mapped[int] = mapped_column(Integer, default=0)
    n_error: Mapped[int] = mapped_column(Integer, default=0)
    value_avg: Mapped[float | None] = mapped_column(Float)
    value_max: Mapped[float | None] = mapped_column(Float)
    __table_args__ = (Index("ix_result_hourly_hour", "hour"),)


TABLES = (Keyset, KeysetMember, ResultTail, ResultHourly)
