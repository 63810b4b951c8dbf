"""A SQLite store keeps one open connection per thread that reads at once, instead of reopening them.

Ingest reads in a session of its own on each of the request threads (anyio's limiter: 40) beside the alert,
score and checkpoint threads. A pool smaller than that made threads wait for a connection and closed every
connection past its size on return, so the next request opened it again (pragmas, schema parse).
"""

from __future__ import annotations

import threading

from sqlalchemy import event, text

from collector.store import Store

READERS = 44  # the request threads and the collector's own background threads, all reading at once


def _read_together(store: Store, n: int) -> None:
    together = threading.Barrier(n)
    failures: list[BaseException] = []

    def read():
        try:
            with store.session() as s:
                s.execute(text("SELECT count(*) FROM points")).scalar_one()
                together.wait(timeout=10)  # every reader holds its connection at the same moment
        except BaseException as exc:  # handed to the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=read) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not failures, failures[0]


def test_sqlite_readers_at_once_each_get_a_connection_and_keep_it(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'pointwatch.db'}")
    store.upgrade()
    opened: list[int] = []
    event.listen(store.engine, "connect", lambda *_: opened.append(1))
    try:
        _read_together(store, READERS)
        first = len(opened)
        assert 0 < first <= READERS
        for _ in range(3):
            _read_together(store, READERS)
        assert len(opened) == first, f"{len(opened) - first} connections reopened after the first round"
    finally:
        store.close()
