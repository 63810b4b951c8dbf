"""The store seam: everything the collector keeps goes through :class:`Store`.

SQLite (WAL, busy timeout) is the default, in the data directory; ``POINTWATCH_DATABASE_URL`` selects
PostgreSQL (psycopg 3). Routers and the CLI call Store methods; SQL lives in this package only.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from collections import deque
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import create_engine, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from collector.store import models as m


class StoreError(Exception):
    """A request the store refuses; ``code`` is a stable machine key, the message is for people."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class TokenInfo:
    """Who is asking: an API token or a web session (``via``), with the role and region it is bound to."""

    id: int
    role: str
    region_path: str
    point_code: str | None
    agent_id: str | None
    actor: str = ""  # for the audit log: "user:alice", "token:12", "agent:<id>"
    via: str = "token"  # token | session
    person: str | None = None


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def database_url(data_dir: str | os.PathLike) -> str:
    url = os.environ.get("POINTWATCH_DATABASE_URL")
    if url:
        # Accept the plain libpq form too: psycopg 3 is the only PostgreSQL driver we ship.
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        return url
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(data_dir).resolve() / 'pointwatch.db'}"


def make_engine(url: str, background_checkpoints=lambda: False) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL is durable across process crashes
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            # A flag read here, not a listener the checkpointer adds when it starts: adding one while another
            # thread connects fails that connection ("deque mutated during iteration", seen in the e2e test).
            if background_checkpoints():  # collector/upkeep/checkpoint.py does them
                cur.execute("PRAGMA wal_autocheckpoint=0")
                # After a spell in which the WAL could not start over, give the disk back when it does.
                cur.execute(f"PRAGMA journal_size_limit={64 * 2**20}")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Store:
    def __init__(self, url: str):
        self.url = url
        self.background_checkpoints = False  # set by collector/upkeep/checkpoint.py while its thread runs
        self.engine = make_engine(url, lambda: self.background_checkpoints)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer; serialising writers here (one process per SQLite store) keeps the hash
        # chains linear and spares threads the busy-wait. PostgreSQL serialises with row/advisory locks.
        self._write_lock = threading.Lock()
        self._token_cache: dict = {}
        # Group commit of concurrent ingest calls (collector/store/ingest.py).
        self._ingest_lock = threading.Lock()
        self._group_guard = threading.Lock()
        self._group_queue: deque = deque()

    @classmethod
    def open(cls, data_dir: str | os.PathLike) -> Store:
        store = cls(database_url(data_dir))
        store.create_schema()
        return store

    def create_schema(self) -> None:
        """Bring the schema to the newest migration (Alembic); a no-op when it is already there."""
        self.upgrade()

    def upgrade(self, revision: str = "head") -> tuple[str | None, str]:
        from collector.store.migrate import upgrade

        return upgrade(self.engine, self.url, revision)

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @contextmanager
    def session(self):
        with self._sessions() as session, session.begin():
            yield session

    def _one_writer(self):
        # SQLite has one writer: the lock orders them here; PostgreSQL orders them with row/advisory locks.
        return self._write_lock if self.is_sqlite else nullcontext()

    @contextmanager
    def write_session(self):
        """A transaction that appends to a hash chain (reports, audit log): serialised on SQLite."""
        with self._one_writer(), self.session() as session:
            yield session

    @contextmanager
    def write_connection(self):
        """A Core transaction for bulk writes, serialised with write_session() on SQLite: a writer waiting
        here waits on a lock, not in SQLite's busy handler, whose sleeps of up to 100 ms landed on ingest."""
        with self._one_writer(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def writers_held(self, timeout: float):
        """Hold the serialised writers (write_session, write_connection) off for a moment; yields whether it
        could within ``timeout`` seconds."""
        held = self._write_lock.acquire(timeout=timeout)
        try:
            yield held
        finally:
            if held:
                self._write_lock.release()

    def close(self) -> None:
        self.engine.dispose()

    # -- regions and points --------------------------------------------------------------------------
    def ensure_region(self, session: Session, path: str) -> None:
        from collector.registry.regions import ancestors, split_path

        for level, prefix in enumerate(ancestors(path), start=1):
            if session.scalar(select(m.Region.id).where(m.Region.path == prefix)) is None:
                parent = "/".join(split_path(prefix)[:-1]) or None
                session.add(m.Region(path=prefix, name=split_path(prefix)[-1], parent_path=parent, level=level))
                session.flush()

    def upsert_point(self, code: str, name: str, region_path: str, profile: str = "national-basic",
                     simulated: bool = False, report_interval_s: int = 60, address: str | None = None,
                     actor=None) -> None:
        from collector.registry.regions import normalize_path
        from collector.store.audit import append
        from collector.store.people import SYSTEM

        region_path = normalize_path(region_path)
        with self.write_session() as s:
            append(s, actor or SYSTEM, "point.upsert", f"point:{code}", {"name": name, "profile": profile},
                   region_path)
            self.ensure_region(s, region_path)
            point = s.scalar(select(m.Point).where(m.Point.code == code))
            if point is None:
                s.add(m.Point(code=code, name=name, region_path=region_path, profile=profile, simulated=simulated,
                              report_interval_s=report_interval_s, address=address, created_at=utcnow()))
                s.add(m.PointState(point_code=code, last_digest="", seq_gaps=0, reports_total=0,
                                   fingerprint_mismatch=False))
            else:
                point.name, point.region_path, point.profile = name, region_path, profile
                point.simulated, point.report_interval_s, point.address = simulated, report_interval_s, address

    def point_region(self, code: str) -> str | None:
        with self.session() as s:
            return s.scalar(select(m.Point.region_path).where(m.Point.code == code))

    # -- tokens and enrolment ------------------------------------------------------------------------
    def create_enroll_code(self, point_code: str, valid_for: timedelta = timedelta(days=7),
                           actor=None) -> str:
        from collector.store.audit import append
        from collector.store.people import SYSTEM

        # Short enough to read out over the phone to the person at the village PC, long enough not to guess.
        code = "-".join(secrets.token_hex(3).upper() for _ in range(3))
        with self.write_session() as s:
            region = s.scalar(select(m.Point.region_path).where(m.Point.code == point_code))
            if region is None:
                raise StoreError("unknown_point", f"no point with code '{point_code}'")
            now = utcnow()
            s.add(m.EnrollCode(code_hash=sha256_hex(code), point_code=point_code, created_at=now,
                               expires_at=now + valid_for))
            append(s, actor or SYSTEM, "enroll_code.create", f"point:{point_code}",
                   {"expires_at": (now + valid_for).isoformat()}, region)
        return code

    def enroll(self, code: str, point_code: str, hostname: str, fingerprint: dict,
               source: str | None = None) -> tuple[str, str]:
        """Trade a one-time code for (agent_id, token); the fingerprint is pinned for 人机信息相符."""
        import uuid

        from collector.store.audit import Actor, append

        now = utcnow()
        with self.write_session() as s:
            row = s.get(m.EnrollCode, sha256_hex(code.strip().upper()), with_for_update=True)
            if row is None or row.used_at is not None or _aware(row.expires_at) < now:
                raise StoreError("bad_enroll_code", "注册码无效、已使用或已过期")
            if row.point_code != point_code:
                raise StoreError("enroll_code_other_point", "注册码不属于该服务点")
            agent_id = str(uuid.uuid4())
            token = "pw_" + secrets.token_urlsafe(32)
            row.used_at, row.used_by_agent = now, agent_id
            s.add(m.Agent(id=agent_id, point_code=point_code, hostname=hostname, fingerprint=fingerprint,
                          enrolled_at=now))
            region = s.scalar(select(m.Point.region_path).where(m.Point.code == point_code)) or "/"
            s.add(m.ApiToken(token_hash=sha256_hex(token), role="agent", region_path=region,
                             point_code=point_code, agent_id=agent_id, description=f"enrolled {hostname}"[:200],
                             created_at=now))
            # The agent's own credential is issued here, so the enrolment is on the record too.
            append(s, Actor(f"agent:{agent_id}", source), "agent.enroll", f"point:{point_code}",
                   {"hostname": hostname, "fingerprint": fingerprint}, region)
        return agent_id, token

    # -- ingest and reads live in their own modules, bound here so callers see one seam -------------
    from collector.store.audit import audit_entries, record, verify_audit  # noqa: E402
    from collector.store.ingest import ingest_reports  # noqa: E402
    from collector.store.metriclines import (  # noqa: E402
        metric_rows,
        metrics_points,
        points_with_stale_lines,
        save_metric_lines,
        stream_metric_lines,
    )
    from collector.store.observations import latest_observations, observations  # noqa: E402
    from collector.store.overview import overview  # noqa: E402
    from collector.store.people import (  # noqa: E402
        authenticate,
        create_token,
        create_user,
        list_tokens,
        list_users,
        login,
        logout,
        revoke_token,
        session_info,
        set_password,
    )
    from collector.store.pointscores import (  # noqa: E402
        metrics_compliance,
        points_needing_scores,
        save_scores,
        score_inputs,
    )
    from collector.store.queries import (  # noqa: E402
        latest_for_point,
        list_points,
        point_results,
        point_summary,
        reports_for_point,
    )
    from collector.store.registry import export_points, import_points  # noqa: E402
    from collector.store.retention import hourly, prune, rollup, run_maintenance  # noqa: E402
    from collector.store.series import check_series  # noqa: E402

    # -- post-commit ingest hooks: alerts evaluate on ingest without ingest knowing about them ------------
    def add_ingest_hook(self, hook) -> None:
        """``hook(point_codes, received_at)`` runs after a batch with new reports has committed. It must be
        quick (hand work to a thread); an exception in it is logged and never fails the ingest."""
        self.__dict__.setdefault("_ingest_hooks", []).append(hook)

    def ingest_reports(self, reports, received_at=None):  # noqa: F811 — wraps the store function bound above
        from collector.store import ingest as _ingest

        received_at = received_at or utcnow()
        accepted, duplicates = _ingest.ingest_reports(self, reports, received_at)
        if accepted:
            codes = sorted({r.point_code for r in reports})
            for hook in self.__dict__.get("_ingest_hooks", ()):
                try:
                    hook(codes, received_at)
                except Exception:
                    import logging

                    logging.getLogger("pointwatch.store").exception("ingest_hook_failed hook=%r", hook)
        return accepted, duplicates


    # -- alert reads for /metrics (the alert tables live in collector/alerts) ---------------------------
    def metrics_alerts(self, scope: str = "/"):
        from sqlalchemy.exc import OperationalError, ProgrammingError

        from collector.alerts.queries import metrics_alerts

        try:
            return metrics_alerts(self, scope)
        except (OperationalError, ProgrammingError):  # a store the alert tables were never created in
            return []

    def alerts_firing_counts(self, scope: str = "/"):
        from collector.alerts.queries import alerts_firing_counts

        return alerts_firing_counts(self, scope)


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
