"""The tables of agent releases (issue 23): one row per (version, platform), the signed manifest as given;
the stages in which the collector paused a version by itself; and the release files' bytes, in chunks.

The file travels with the database (collector/store/releasefiles.py): every collector on one database serves
what any one of them added, and a release row is written in the same transaction as its file's chunks.
Kept apart from models.py (which it extends: the same ``Base``), registered by the migrations' env.py.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from collector.store.models import Base, UtcDateTime


class AgentRelease(Base):
    __tablename__ = "agent_releases"
    version: Mapped[str] = mapped_column(String(40), primary_key=True)
    platform: Mapped[str] = mapped_column(String(20), primary_key=True)
    file_name: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    manifest: Mapped[bytes] = mapped_column(LargeBinary)  # the envelope bytes as given, served as they are
    added_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # An admin's pause holds every platform of a version in every stage: set on each of its rows. The
    # collector's own pause holds one stage only (AgentReleaseStagePause).
    paused_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    paused_reason: Mapped[str | None] = mapped_column(Text)


class AgentReleaseStagePause(Base):
    """The collector's automatic pause of a version in one rollout stage (collector/releases/rollout.py): the
    points of that stage are answered 409, the agents of every other stage keep getting the release."""

    __tablename__ = "agent_release_stage_pauses"
    version: Mapped[str] = mapped_column(String(40), primary_key=True)
    stage: Mapped[str] = mapped_column(String(420), primary_key=True)  # a region path, or "point:CODE"
    paused_at: Mapped[datetime] = mapped_column(UtcDateTime())
    paused_reason: Mapped[str] = mapped_column(Text)


class AgentReleaseChunk(Base):
    """One fixed-size piece of a release file (the last one shorter), under the digest of the whole file: the
    rows of one file are shared by every (version, platform) holding that build. ``digest`` is the sha256 of
    this chunk's bytes, so a chunk changed after the file was verified is caught as it is served."""

    __tablename__ = "agent_release_chunks"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    digest: Mapped[str] = mapped_column(String(64))


TABLES = (AgentRelease, AgentReleaseStagePause, AgentReleaseChunk)
