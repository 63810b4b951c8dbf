"""The store seam: everything the collector keeps goes through this package.

:class:`Store` is the database handle only: engine, sessions, the serialised writers, migrations.
What is stored is read and written by the repository modules beside it, plain functions that take the
handle: ``points.upsert_point(store, ...)``, ``people.list_users(store, ...)``,
``audit.audit_entries(store, ...)``, ``alerts.list_alerts(store, ...)``. SQL lives in this package only.

SQLite (WAL, busy timeout) is the default, in the data directory; ``POINTWATCH_DATABASE_URL`` selects
PostgreSQL (psycopg 3).
"""

from __future__ import annotations

import hashlib
import os
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker


class StoreError(Exception):
    """A request the store refuses. ``code`` is a stable machine key; the store's own messages are plain
    English, and the layers that face people (collector/accounts/, the API) reword the ones people read."""

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
    path = Path(data_dir).resolve() / "pointwatch.db"
    private_database_files(path)
    return f"sqlite:///{path}"


def private_database_files(path: Path) -> None:
    """The SQLite database (users' password hashes, every report) is readable by its owner only, like the
    signing key: created 0600 before SQLite opens it (SQLite gives its -wal and -shm files the database's
    own mode), and an older store's files made 0600 too."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError:  # a read-only directory: opening the store reports it, not this
        return
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if name.stat().st_mode & 0o077 and name.stat().st_uid == getattr(os, "getuid", lambda: -1)():
                name.chmod(0o600)
        except OSError:  # absent, another owner's, or a read-only file system
            pass


def dialect_insert(dialect: str):
    """The INSERT with ``on_conflict_do_*`` of the store's database (PostgreSQL or SQLite: both upsert)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def make_engine(url: str, background_checkpoints=lambda: False) -> Engine:
    if url.startswith("sqlite"):
        # Every worker thread (anyio's 40 for requests, plus the alert, score and checkpoint threads) reads
        # in a session of its own; a pool smaller than that closes the overflow connections on return and
        # opens new ones, each paying the open, the pragmas below and the schema parse on first use: at
        # 64 concurrent agents a steady churn of connections. Idle SQLite connections cost a file handle each.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=48, max_overflow=16)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL is durable across process crashes
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            # A flag read at connect rather than a listener the checkpointer adds when it starts: SQLAlchemy's
            # event registry may not change while another thread is connecting.
            if background_checkpoints():  # collector/upkeep/checkpoint.py does them
                cur.execute("PRAGMA wal_autocheckpoint=0")
                # After a spell in which the WAL could not start over, give the disk back when it does.
                cur.execute(f"PRAGMA journal_size_limit={64 * 2**20}")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


MIN_FREE_BYTES = 4 * 2**20  # free space a SQLite store wants beside it to be ready (see Store.probe_write)


def read_only_error(exc: BaseException) -> bool:
    """Whether a database error says the store cannot be written at all (files, mount or server read-only;
    SQLite in WAL mode on a read-only mount cannot even open its -shm file)."""
    text = str(getattr(exc, "orig", None) or exc).lower()
    return any(s in text for s in ("readonly", "read-only", "read only", "unable to open database file"))


class Store:
    """The database handle: engine, sessions, the writer lock, migrations. What is stored and how it is read
    are the repository modules beside this one (points, people, audit, queries, ...), functions that take
    this handle."""

    def __init__(self, url: str):
        self.url = url
        self.background_checkpoints = False  # set by collector/upkeep/checkpoint.py while its thread runs
        self.engine = make_engine(url, lambda: self.background_checkpoints)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer; serialising writers here (one process per SQLite store) keeps the hash
        # chains linear and spares threads the busy-wait. PostgreSQL serialises with row/advisory locks.
        self._write_lock = threading.Lock()

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
        """A transaction that appends to a hash chain (reports, audit log): serialised on SQLite.

        The lock orders this process's writers; the database orders everyone's: on SQLite the transaction
        starts with BEGIN IMMEDIATE, so it holds the write lock before it reads a chain's head (Python's
        sqlite3 otherwise reads outside any transaction and begins only at the first write, and two processes
        could both append to the same head). PostgreSQL writers take row or advisory locks."""
        with self._one_writer(), self.session() as session:
            if self.is_sqlite:
                session.connection().exec_driver_sql("BEGIN IMMEDIATE")
            yield session

    @contextmanager
    def write_connection(self):
        """A Core transaction for bulk writes, serialised with write_session() on SQLite: a writer waiting
        here waits on a lock, not in SQLite's busy handler, whose sleeps of up to 100 ms landed on ingest."""
        with self._one_writer(), self.engine.begin() as conn:
            if self.is_sqlite:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn

    @property
    def sqlite_path(self) -> Path | None:
        return Path(self.url.split("///", 1)[1]) if self.is_sqlite and "///" in self.url else None

    def hold_directory(self) -> None:
        """Serving a SQLite store: take an exclusive lock on its directory for this process's lifetime, so a
        second collector on the same --data-dir refuses to start (naming the pid holding it) instead of
        writing beside the first. A no-op on PostgreSQL, where several collectors may share one database."""
        path = self.sqlite_path
        if path is None or getattr(self, "_dir_lock", None) is not None:
            return
        lock_path = path.parent / "pointwatch.lock"
        try:
            fh = open(lock_path, "a+", encoding="utf-8")  # noqa: SIM115 - held open while the process serves
        except OSError as exc:
            raise StoreError("read_only", f"the store directory {path.parent} cannot be written ({exc.strerror}); "
                                          "a collector needs to write there: fix its permissions or mount") from None
        try:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # not POSIX (Windows): the collector is served from Linux
            pass
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise StoreError("store_in_use", f"the store in {path.parent} is in use by another collector "
                                             f"(pid {holder}); stop it, or give this one another --data-dir") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._dir_lock = fh

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

    def ping(self) -> None:
        """Raise unless the database answers."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def probe_write(self) -> None:
        """Raise unless a write can be committed now (readiness, and the start of ``serve``): a database that
        answers reads with its disk full or its files read-only is not a store. Commits one row of job_state;
        on SQLite also wants MIN_FREE_BYTES free beside the database, since a write that reuses WAL pages
        succeeds on a full disk until the next one that needs a page more."""
        path = self.sqlite_path
        if path is not None:
            st = os.statvfs(path.parent)
            free = st.f_bavail * st.f_frsize
            if free < MIN_FREE_BYTES:
                raise StoreError("disk_full", f"only {free} bytes free in {path.parent} (the store needs "
                                              f"{MIN_FREE_BYTES} to take writes)")
        with self.write_connection() as conn:
            conn.execute(text("INSERT INTO job_state (name, runs) VALUES ('write_probe', 1) ON CONFLICT (name) "
                              "DO UPDATE SET runs = job_state.runs % 1000000 + 1"))

    def wal_checkpoint(self) -> tuple[int, int, int] | None:
        """One passive WAL checkpoint of a SQLite store (collector/upkeep/checkpoint.py decides when):
        (busy, WAL frames, frames checkpointed)."""
        with self.engine.connect() as conn:
            row = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").first()
        return tuple(row) if row else None

    def close(self) -> None:
        self.engine.dispose()
        lock, self._dir_lock = getattr(self, "_dir_lock", None), None
        if lock is not None:
            lock.close()
