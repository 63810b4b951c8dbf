"""The durable outbox: every report is written here before any send, and leaves only on acknowledgement.

One SQLite file in the state directory (WAL, synchronous=FULL: a committed report survives a power cut).
The per-agent ``seq`` counter lives in the same file and is bumped in the same transaction as the insert,
so a crash can neither lose a written report nor reuse its number. Rows are deleted by the ids the
collector acknowledged, never "everything" (Zabbix's disk cache deletes the whole table; we don't).

The outbox is bounded: past ``max_reports`` the oldest rows are dropped, and the number dropped is
handed to the next report built (see :class:`Note`), so the collector hears about it.

When the state directory turns read-only or full, the agent keeps checking: reports go to a small
in-memory queue (lost on a power cut, and the reports say so), and the next write that succeeds moves
them back to disk. Nothing here raises on a storage problem; it records the problem instead.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("pointwatch.outbox")

SCHEMA = """
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    seq INTEGER NOT NULL,
    report_id TEXT NOT NULL,
    created REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# Reports kept in memory while the disk cannot be written; an old PC must not grow without bound.
MEMORY_MAX = 500
CACHE_KIB = 256
FULL_BELOW = 64 * 1024  # free bytes under which a failed write is put down to a full disk (SQLite's -shm is 32 KiB)


@dataclass
class Note:
    """What the next report must say about the outbox itself (the ``agent.outbox`` result)."""

    depth: int = 0
    oldest_age_s: float | None = None
    dropped: int = 0            # dropped since the last report was built
    dropped_total: int = 0
    problem: str | None = None  # storage problem, in Chinese, while the disk cannot be written
    memory_queue: int = 0


@dataclass
class Batch:
    db_ids: list[int] = field(default_factory=list)
    mem_seqs: list[int] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)
    backlog: bool = False  # more was waiting than one batch holds: the sender paces itself

    def __len__(self) -> int:
        return len(self.bodies)


class Outbox:
    def __init__(self, path: str | Path, max_reports: int):
        self.path = Path(path)
        self.max_reports = max(1, max_reports)
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._seq = 0
        # (seq, created, body) of reports that could not be written to disk, oldest first
        self._mem: collections.deque = collections.deque()
        self._drop_unreported = 0  # dropped from the memory queue, not yet told in a report
        self._drop_total_mem = 0   # dropped from the memory queue, not yet added to the total on disk
        self._acked_unremoved: set[int] = set()  # acknowledged, but the disk refused the DELETE
        self._fresh_floor = 0  # highest id picked as "fresh" during a backlog (see _select)
        self.problem: str | None = None
        self._open()

    # -- opening and storage problems -------------------------------------------------------------

    def _open(self) -> bool:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(self.path), timeout=10, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            # A bounded page cache: in steady state the outbox holds a few reports, and a backlog is read
            # once, in seq order; SQLite's default (2 MB per connection) only ever held RSS.
            db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            db.executescript(SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE key='seq'").fetchone()
        except (sqlite3.Error, OSError) as exc:
            # Reports made in memory go on from the last seq on disk, never from 1 again (a restart on a
            # full or read-only disk would reuse numbers the collector already has).
            try:
                self._seq = max(self._seq, read_status(self.path).get("last_seq", 0))
            except (sqlite3.Error, OSError, ValueError):
                pass
            self._storage_failed(exc)
            return False
        self._db = db
        self._seq = max(self._seq, int(row[0]) if row else 0)
        return True

    def _storage_failed(self, exc: Exception) -> None:
        # SQLite reports a full disk at open as "disk I/O error" (its -shm cannot grow): ask the file system.
        text = str(exc).lower() + _unwritable(self.path.parent)
        if "full" in text or "no space" in text:
            problem = "状态目录磁盘已满，报告暂存在内存中（断电将丢失）"
        elif "readonly" in text or "read-only" in text or "permission" in text:
            problem = "状态目录只读，报告暂存在内存中（断电将丢失）"
        else:
            problem = f"状态目录无法写入（{exc}），报告暂存在内存中（断电将丢失）"
        if self.problem is None:
            log.error("outbox_unwritable path=%s error=%s", self.path, exc)
        # The connection stays open: a full or read-only disk can usually still be read, so what was
        # written before keeps going out; every later add() tries the disk again first.
        self.problem = problem

    def _recovered(self, moved: int) -> None:
        if self.problem is not None:
            log.info("outbox_writable_again path=%s moved_from_memory=%d", self.path, moved)
            self.problem = None

    # -- writing ----------------------------------------------------------------------------------

    def add(self, build: Callable[[int, Note], dict], job: str | None = None, job_info: dict | None = None) -> int:
        """Build a report with the next seq and store it; returns the seq. Never raises on storage errors."""
        with self._lock:
            if self._db is not None or self._open():
                try:
                    waiting = len(self._mem)
                    seq = self._add_to_db(build, job, job_info)
                    self._recovered(waiting)
                    return seq
                except (sqlite3.Error, OSError) as exc:
                    self._rollback()
                    self._storage_failed(exc)
            return self._add_to_memory(build)

    def _add_to_db(self, build, job, job_info) -> int:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        meta = dict(db.execute("SELECT key, value FROM meta WHERE key IN ('seq','dropped','dropped_total')"))
        dropped = int(meta.get("dropped", 0)) + self._drop_unreported
        dropped_total = int(meta.get("dropped_total", 0)) + self._drop_total_mem
        # Acknowledged while the disk refused the DELETE: gone first, so neither the depth this report tells
        # nor the bound counts reports the collector already has.
        if self._acked_unremoved:
            _delete_ids(db, self._acked_unremoved)
        # Reports that waited in memory go to disk first, so disk order stays seq order.
        for mseq, created, body in self._mem:
            db.execute("INSERT INTO reports (seq, report_id, created, body) VALUES (?,?,?,?)",
                       (mseq, _report_id(body), created, body))
        seq = max(self._seq, int(meta.get("seq", 0))) + 1
        depth = db.execute("SELECT count(*) FROM reports").fetchone()[0]
        excess = depth + 1 - self.max_reports
        if excess > 0:
            # Full: the oldest go, and the report being written now says so (never silently).
            db.execute("DELETE FROM reports WHERE id IN (SELECT id FROM reports ORDER BY id LIMIT ?)", (excess,))
            log.warning("outbox_full dropped_oldest=%d max_reports=%d", excess, self.max_reports)
            dropped, dropped_total, depth = dropped + excess, dropped_total + excess, depth - excess
        oldest = db.execute("SELECT min(created) FROM reports").fetchone()[0]
        note = Note(depth=depth, oldest_age_s=_age(oldest), dropped=dropped, dropped_total=dropped_total)
        report = build(seq, note)
        body = json.dumps(report, ensure_ascii=False, separators=(",", ":"))
        db.execute("INSERT INTO reports (seq, report_id, created, body) VALUES (?,?,?,?)",
                   (seq, report["report_id"], time.time(), body))
        _put_meta(db, seq=seq, dropped=0, dropped_total=dropped_total)
        if job:
            _put_meta(db, **{f"job.{job}": json.dumps(job_info or {}, ensure_ascii=False)})
        db.execute("COMMIT")
        self._seq, self._drop_unreported, self._drop_total_mem = seq, 0, 0
        self._mem.clear()
        self._acked_unremoved.clear()
        return seq

    def _add_to_memory(self, build) -> int:
        self._seq += 1
        note = Note(depth=len(self._mem), oldest_age_s=_age(self._mem[0][1]) if self._mem else None,
                    dropped=self._drop_unreported, dropped_total=self._drop_total_mem, problem=self.problem,
                    memory_queue=len(self._mem))
        report = build(self._seq, note)
        self._drop_unreported = 0
        self._mem.append((self._seq, time.time(), json.dumps(report, ensure_ascii=False, separators=(",", ":"))))
        while len(self._mem) > MEMORY_MAX:
            self._mem.popleft()
            self._drop_unreported += 1
            self._drop_total_mem += 1
        return self._seq

    def _rollback(self) -> None:
        try:
            if self._db is not None and self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    # -- sending ----------------------------------------------------------------------------------

    def batch(self, limit: int = 50, fresh: int = 5, max_bytes: int = 1_000_000) -> Batch:
        """The next reports to send, oldest first.

        When more waits than one batch holds, a batch is the newest ``fresh`` reports plus the oldest of the
        backlog, so the dashboard sees the present at once while the past drains at a bounded pace.
        """
        with self._lock:
            out = Batch()
            rows: list[tuple] = []
            if self._db is not None:
                try:
                    rows = self._select(limit, fresh, out)
                except sqlite3.Error as exc:
                    log.warning("outbox_read_failed error=%s", exc)
            size = 0
            for row_id, body in rows:
                if out.bodies and size + len(body) > max_bytes:
                    out.backlog = True
                    break
                out.db_ids.append(row_id)
                out.bodies.append(body)
                size += len(body)
            for mseq, _created, body in self._mem:
                if len(out) >= limit or (out.bodies and size + len(body) > max_bytes):
                    out.backlog = True
                    break
                out.mem_seqs.append(mseq)
                out.bodies.append(body)
                size += len(body)
            return out

    def _select(self, limit: int, fresh: int, out: Batch) -> list[tuple]:
        skip = sorted(self._acked_unremoved)
        where = f"WHERE id NOT IN ({','.join('?' * len(skip))})" if skip else ""
        depth = self._db.execute(f"SELECT count(*) FROM reports {where}", skip).fetchone()[0]
        if depth <= limit:
            return self._db.execute(f"SELECT id, body FROM reports {where} ORDER BY id", skip).fetchall()
        out.backlog = True
        # Fresh reports only ever move forward: newer than every fresh one already picked, so the fresh
        # stream and the backlog (oldest first) each arrive in order; what is skipped drains with the backlog.
        fresh_where = f"{where} {'AND' if where else 'WHERE'} id > ?"
        newest = self._db.execute(f"SELECT id, body FROM reports {fresh_where} ORDER BY id DESC LIMIT ?",
                                  [*skip, self._fresh_floor, fresh]).fetchall()
        if newest:
            self._fresh_floor = max(self._fresh_floor, newest[0][0])
        oldest = self._db.execute(f"SELECT id, body FROM reports {where} ORDER BY id LIMIT ?",
                                  [*skip, limit - len(newest)]).fetchall()
        return sorted(dict(oldest + newest).items())

    def ack(self, batch: Batch, answer: dict | None = None) -> None:
        """The collector acknowledged ``batch``: delete exactly those reports."""
        with self._lock:
            sent = set(batch.mem_seqs)
            self._mem = collections.deque(m for m in self._mem if m[0] not in sent)
            now = time.time()
            info = {"last_ack_at": now, "last_ack_count": len(batch),
                    "last_ack_answer": json.dumps(answer or {}, ensure_ascii=False)[:500]}
            if self._db is None or not batch.db_ids and self.problem:
                self._acked_unremoved.update(batch.db_ids)
                return
            try:
                # An acknowledgement lost to a power cut only makes the batch go again, and the collector
                # counts a report_id once: this commit need not wait for the disk (the next report's FULL
                # commit syncs it along). Reports themselves are still committed with synchronous=FULL.
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute("BEGIN IMMEDIATE")
                _delete_ids(self._db, batch.db_ids)
                _put_meta(self._db, **info)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                self._acked_unremoved.update(batch.db_ids)
                self._storage_failed(exc)
            finally:
                self._full_sync()

    def _full_sync(self) -> None:
        try:
            if self._db is not None:
                self._db.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            # Never go on committing reports without FULL: reopen (which sets it) at the next write.
            log.warning("outbox_pragma_failed error=%s", exc)
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None

    # -- status -----------------------------------------------------------------------------------

    def note(self, **values) -> None:
        """Remember status facts (last error, …) on disk if possible (`pointwatch-agent status` reads them)."""
        with self._lock:
            if self._db is None:
                return
            try:
                _put_meta(self._db, **values)
            except sqlite3.Error as exc:
                self._storage_failed(exc)

    def depth(self) -> int:
        with self._lock:
            n = len(self._mem)
            if self._db is not None:
                try:
                    n += self._db.execute("SELECT count(*) FROM reports").fetchone()[0]
                    n -= len(self._acked_unremoved)
                except sqlite3.Error:
                    pass
            return n

    def close(self) -> None:
        with self._lock:
            if self._mem:
                log.warning("outbox_memory_reports_lost count=%d reason=%s", len(self._mem), self.problem)
            if self._db is not None:
                self._db.close()
                self._db = None


def read_status(path: str | Path) -> dict:
    """What `pointwatch-agent status` shows, read from the outbox file without writing to it."""
    path = Path(path)
    if not path.exists():
        return {"outbox": "missing"}
    try:
        depth, oldest, first_seq, last_seq, meta = _read(path, "mode=ro")
    except sqlite3.OperationalError:
        if not _unwritable(path.parent):
            raise
        # A read-only or full file system and no -shm file beside the outbox (the agent is not running): SQLite
        # opens a WAL database read-only then only when told nothing changes it, which nothing can.
        depth, oldest, first_seq, last_seq, meta = _read(path, "mode=ro&immutable=1")
    jobs = {k[4:]: json.loads(v) for k, v in meta.items() if k.startswith("job.")}
    return {
        "outbox": "ok", "depth": depth, "oldest_age_s": _age(oldest), "oldest_seq": first_seq,
        "newest_seq": last_seq, "last_seq": int(meta.get("seq", 0)),
        "dropped_total": int(meta.get("dropped_total", 0)),
        "last_ack_at": _float(meta.get("last_ack_at")), "last_ack_count": _int(meta.get("last_ack_count")),
        "last_error": meta.get("last_error") or None, "last_error_at": _float(meta.get("last_error_at")),
        "jobs": jobs,
    }


def _read(path: Path, mode: str) -> tuple:
    db = sqlite3.connect(f"file:{path}?{mode}", uri=True, timeout=5)
    try:
        counts = db.execute("SELECT count(*), min(created), min(seq), max(seq) FROM reports").fetchone()
        return (*counts, dict(db.execute("SELECT key, value FROM meta")))
    finally:
        db.close()


def _put_meta(db: sqlite3.Connection, **values) -> None:
    db.executemany("INSERT INTO meta (key, value) VALUES (?, ?) "
                   "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                   [(k, "" if v is None else str(v)) for k, v in values.items()])


def _delete_ids(db: sqlite3.Connection, ids) -> None:
    ids = list(ids)
    for i in range(0, len(ids), 500):  # SQLite caps the number of bound parameters
        chunk = ids[i:i + 500]
        db.execute(f"DELETE FROM reports WHERE id IN ({','.join('?' * len(chunk))})", chunk)


def _unwritable(directory: Path) -> str:
    """" read-only" or " full" (less than FULL_BELOW bytes left; root ignores file modes), else ""."""
    try:
        fs = os.statvfs(directory)
    except (OSError, AttributeError):  # no statvfs on Windows: fall back to the error text
        return ""
    if fs.f_flag & os.ST_RDONLY:
        return " read-only"
    return " full" if fs.f_bavail * fs.f_frsize < FULL_BELOW else ""


def _report_id(body: str) -> str:
    return json.loads(body).get("report_id", "")


def _age(created: float | None) -> float | None:
    return None if created is None else round(max(0.0, time.time() - created), 1)


def _float(v):
    return float(v) if v else None


def _int(v):
    return int(v) if v else None
