"""The bytes of agent release files, in the database (table ``agent_release_chunks``, releasemodels.py).

A file is cut into ``CHUNK``-sized rows under its sha256 (the last one shorter), written in the transaction
of the release row that names it (collector/store/releases.py ``add``), so a release is never listed without
its whole file and every collector on the database serves what any one added. Reads fetch one chunk per
query: a download, ranged or whole, holds about one chunk in memory whatever the file's size (a PostgreSQL
cursor would otherwise fetch every row of a select at once).

What is served is checked, never believed: before an answer starts, the chunk rows must add up to the
release's size (each one present, each of its expected length), and once per process each file is read
through and its sha256 compared with the release's; every chunk is compared with its own digest as it is
streamed, so a chunk changed after that check cuts the download (the agent sees a short body, never a
complete-looking wrong file) rather than serving it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from collector.store import StoreError
from collector.store.releasemodels import AgentRelease, AgentReleaseChunk

log = logging.getLogger("pointwatch.releases")
CHUNK = 1024 * 1024


class ChunksDamaged(Exception):
    """The chunk rows of a file do not make up the file: ``problem`` names the chunk and what is wrong."""

    def __init__(self, sha256: str, chunk: int | None, problem: str):
        super().__init__(f"release file {sha256}: {problem}")
        self.sha256, self.chunk, self.problem = sha256, chunk, problem


def expected_lengths(size: int) -> list[int]:
    full, rest = divmod(size, CHUNK)
    return [CHUNK] * full + ([rest] if rest else [])


def write(s, sha256: str, size: int, source) -> bool:
    """In the caller's transaction ``s``: the chunks of the file ``source`` under ``sha256``, unless they are
    held whole already (False). The bytes are hashed as they are written; a file that is not ``size`` bytes
    with digest ``sha256`` raises StoreError("release_file_changed") and the transaction writes nothing."""
    if layout_problem(s, sha256, size) is None:
        return False
    s.execute(delete(AgentReleaseChunk).where(AgentReleaseChunk.sha256 == sha256))
    h, written = hashlib.sha256(), 0
    with open(source, "rb") as fh:
        for idx in range(len(expected_lengths(size)) + 1):  # one read past the end: a longer file is refused
            data = fh.read(CHUNK)
            if not data:
                break
            h.update(data)
            written += len(data)
            if written > size:
                break
            # Core, not the ORM: the session keeps no chunk's bytes once they are sent.
            s.execute(insert(AgentReleaseChunk).values(sha256=sha256, idx=idx, data=data,
                                                       digest=hashlib.sha256(data).hexdigest()))
    if written != size or h.hexdigest() != sha256:
        raise StoreError("release_file_changed", f"the file {source} is not the one checked (sha256 {sha256}, "
                                                 f"{size} bytes)")
    return True


def drop_unreferenced(s, sha256: str) -> None:
    """In ``s``: the chunks of ``sha256`` when no release row names that file any more."""
    if s.scalar(select(func.count()).select_from(AgentRelease).where(AgentRelease.sha256 == sha256)) == 0:
        s.execute(delete(AgentReleaseChunk).where(AgentReleaseChunk.sha256 == sha256))


def layout_problem(s, sha256: str, size: int) -> tuple[int | None, str] | None:
    """(chunk index, what is wrong) when the chunk rows of ``sha256`` do not add up to ``size`` bytes."""
    rows = s.execute(select(AgentReleaseChunk.idx, func.length(AgentReleaseChunk.data))
                     .where(AgentReleaseChunk.sha256 == sha256).order_by(AgentReleaseChunk.idx)).all()
    held = dict(rows)
    wanted = expected_lengths(size)
    for idx, length in enumerate(wanted):
        if idx not in held:
            return idx, f"chunk {idx} of {len(wanted)} missing"
        if held[idx] != length:
            return idx, f"chunk {idx} has {held[idx]} bytes, {length} expected"
    extra = sorted(set(held) - set(range(len(wanted))))
    if extra:
        return extra[0], f"chunk {extra[0]} beyond the {len(wanted)} of a {size}-byte file"
    return None


def _fetch(store, sha256: str, idx: int) -> tuple[bytes, str] | None:
    if store.is_sqlite:
        with store.session() as s:
            row = s.execute(select(AgentReleaseChunk.data, AgentReleaseChunk.digest)
                            .where(AgentReleaseChunk.sha256 == sha256, AgentReleaseChunk.idx == idx)).first()
        return None if row is None else (bytes(row.data), row.digest)
    # PostgreSQL: the result in binary format. In text format the server hex-encodes the chunk (2 MiB on the
    # wire for 1 MiB) and psycopg decodes it again; that took over half the time of serving a release.
    with store.engine.connect() as conn:
        row = conn.connection.driver_connection.execute(
            "SELECT data, digest FROM agent_release_chunks WHERE sha256 = %s AND idx = %s", (sha256, idx),
            binary=True).fetchone()
    return None if row is None else (bytes(row[0]), row[1])


def _chunk(store, sha256: str, idx: int, length: int) -> bytes:
    row = _fetch(store, sha256, idx)
    if row is None:
        raise ChunksDamaged(sha256, idx, f"chunk {idx} missing")
    data, digest = row
    if len(data) != length:
        raise ChunksDamaged(sha256, idx, f"chunk {idx} has {len(data)} bytes, {length} expected")
    if hashlib.sha256(data).hexdigest() != digest:
        raise ChunksDamaged(sha256, idx, f"chunk {idx} does not match its digest")
    return data


_verified: set[tuple[str, str]] = set()
_verifying: dict[tuple[str, str], threading.Lock] = {}
_guard = threading.Lock()


def check(store, sha256: str, size: int) -> None:
    """Raise ChunksDamaged unless the chunks of ``sha256`` make up its file: the rows add up (every call), and
    the bytes hash to ``sha256`` (read through once per process and file; concurrent first callers wait for
    one reading)."""
    with store.session() as s:
        problem = layout_problem(s, sha256, size)
    if problem is not None:
        raise ChunksDamaged(sha256, *problem)
    key = (store.url, sha256)
    if key in _verified:
        return
    with _guard:
        lock = _verifying.setdefault(key, threading.Lock())
    with lock:
        if key in _verified:
            return
        h = hashlib.sha256()
        for idx, length in enumerate(expected_lengths(size)):
            h.update(_chunk(store, sha256, idx, length))
        if h.hexdigest() != sha256:
            raise ChunksDamaged(sha256, None, f"the chunks hash to {h.hexdigest()}")
        _verified.add(key)


def read(store, sha256: str, size: int, first: int, last: int):
    """The bytes first..last of the file, fetching only the chunks they lie in, one at a time (a
    StreamingResponse iterates it on a worker thread). A chunk found damaged is logged and ends the stream
    with ChunksDamaged, before any of its bytes are sent."""
    lengths = expected_lengths(size)
    for idx in range(first // CHUNK, last // CHUNK + 1):
        try:
            data = _chunk(store, sha256, idx, lengths[idx])
        except ChunksDamaged as exc:
            log.error("release_chunk_damaged sha256=%s chunk=%s problem=%r served_until=%s", sha256, exc.chunk,
                      exc.problem, idx * CHUNK)
            raise
        start = max(first - idx * CHUNK, 0)
        end = min(last - idx * CHUNK + 1, len(data))
        yield memoryview(data)[start:end]


def import_files(store, data_dir) -> dict[str, str]:
    """Bring the files a collector kept in ``<data_dir>/releases/<sha256>`` (before the file travelled with the
    database) into it: {sha256: "imported" | "held" | "missing" | "refused"} for every file a release names.
    A file is imported only when its bytes hash to its release's sha256 and size; a refused or missing one is
    logged, and nothing on disk is removed (a collector of the earlier version still serves from it)."""
    folder = Path(data_dir) / "releases"
    if not folder.is_dir():  # nothing was ever kept here: a collector that started with the file in the database
        return {}
    with store.session() as s:
        wanted = {sha: size for sha, size in s.execute(select(AgentRelease.sha256, AgentRelease.size).distinct())}
    out: dict[str, str] = {}
    for sha256, size in sorted(wanted.items()):
        with store.session() as s:
            if layout_problem(s, sha256, size) is None:
                out[sha256] = "held"
                continue
        path = folder / sha256
        if not path.is_file():
            out[sha256] = "missing"
            log.warning("release_file_missing sha256=%s dir=%s", sha256, folder)
            continue
        try:
            with store.write_session() as s:
                write(s, sha256, size, path)
            out[sha256] = "imported"
            log.info("release_file_imported sha256=%s size=%s from=%s", sha256, size, path)
        except StoreError as exc:
            out[sha256] = "refused"
            log.error("release_file_import_refused sha256=%s path=%s problem=%r", sha256, path, str(exc))
        except IntegrityError:  # another collector on the database imported it at the same moment
            with store.session() as s:
                out[sha256] = "held" if layout_problem(s, sha256, size) is None else "refused"
    return out
