"""The table of agent releases (issue 23): one row per (version, platform), the signed manifest as given.

The file itself lives beside the store, in ``<data_dir>/releases/<sha256>`` (collector/store/releases.py).
Kept apart from models.py (which it extends: the same ``Base``), registered by the migrations' env.py.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, LargeBinary, String, Text
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
    # A pause holds every platform of a version: set on each of its rows (by an admin or the collector).
    paused_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    paused_reason: Mapped[str | None] = mapped_column(Text)


TABLES = (AgentRelease,)
