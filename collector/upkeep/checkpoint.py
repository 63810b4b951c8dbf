"""SQLite WAL checkpoints off the ingest path.

By default SQLite checkpoints inside the commit that pushes the WAL past 1,000 pages: the ingest transaction
that happens to cross the line copies those pages into the database file and syncs it, while every other
ingest request waits behind the write lock. Under sustained ingest that happens several times a second on
the one serialised path, and costs more as the file grows. So a collector turns the automatic checkpoint
off on its connections and a thread of its own checkpoints every second; SQLite's C code runs without the
GIL, on another core.

Each round has two passes. The first, PASSIVE, copies the bulk of the WAL while writers go on. A WAL is only
started over from its beginning when a writer begins after a checkpoint that copied every frame, which a
checkpoint racing a stream of commits never does: with the first pass alone the WAL grows without bound
under steady ingest. So when the WAL holds more than RESTART_AFTER_FRAMES the second pass copies what the
first left behind while the store's serialised writers wait (milliseconds: only the frames of the first
pass's own duration); the next writer then starts the WAL over. The second pass never waits for a reader,
so a long export delays the restart, never ingest.

Connections without a collector (the offline CLI, tests) keep SQLite's automatic checkpoint.
"""

from __future__ import annotations

import logging
import threading

from collector.upkeep.repeats import Repeats

log = logging.getLogger("pointwatch.store")

EVERY_S = 1.0
RESTART_AFTER_FRAMES = 1000  # SQLite's own automatic checkpoint threshold (4 MiB of 4 KiB pages)
HOLD_WRITERS_AT_MOST_S = 0.5  # how long the second pass waits for the ingest writer before trying next round


class WalCheckpointer:
    def __init__(self, store, every_s: float = EVERY_S, restart_after_frames: int = RESTART_AFTER_FRAMES):
        self.store, self.every_s, self.restart_after_frames = store, every_s, restart_after_frames
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failures = Repeats(log, "wal_checkpoint_failed")

    def start(self) -> None:
        if self._thread is None:
            self.store.background_checkpoints = True  # new connections: no automatic checkpoint
            self.store.engine.dispose()  # and none of the old ones (pooled before the collector started)
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="pw-wal-checkpoint", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)
            self._thread = None
        self.store.background_checkpoints = False
        self.checkpoint()  # what the last second wrote

    def checkpoint(self) -> tuple[int, int, int] | None:
        """(busy, WAL frames, frames checkpointed), as PRAGMA wal_checkpoint answers."""
        return self.store.wal_checkpoint()

    def round(self) -> tuple[int, int, int] | None:
        """One round: the bulk while writers go on, then, for a long WAL, the rest while they wait."""
        state = self.checkpoint()
        if state and state[1] >= self.restart_after_frames:
            with self.store.writers_held(HOLD_WRITERS_AT_MOST_S) as held:
                if held:
                    state = self.checkpoint()
        return state

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.round()
            except Exception as exc:  # the next second tries again; meanwhile the WAL only grows
                self.failures.failed(exc)  # once in full, then counted: not a traceback a second
            else:
                self.failures.succeeded()

