"""Two collectors on one SQLite directory no longer fork the hash chain (issue 18, item 6).

A second ``serve`` on the same --data-dir started without a word; concurrent ingest for one point then broke
its chain, and its evidence failed ``verify`` for ever, as if tampered. Now the serving store holds its
directory (a second collector refuses to start, naming the pid), and chain writes are serialised by the
database itself (SQLite: BEGIN IMMEDIATE; PostgreSQL: row and advisory locks), not by a per-process lock:
two store handles, each with its own lock, writing at once keep one linear chain.
"""

from __future__ import annotations

import subprocess
import threading

from collector.evidence.chain import chain_digest
from collector.store import Store, audit, points
from collector.store import models as m
from tests.conftest import free_port
from tests.helpers import POINT, REGION, ingest, make_report
from tests.livecollector import COLLECTOR, start_collector

WRITERS, EACH = 4, 15


def test_two_handles_writing_at_once_keep_one_chain(db_url):
    handles = [Store(db_url) for _ in range(WRITERS)]  # as if each were a collector process of its own
    handles[0].upgrade()
    points.upsert_point(handles[0], POINT, "某村服务点", REGION)
    barrier = threading.Barrier(WRITERS)
    errors = []

    def write(i: int, store: Store) -> None:
        try:
            barrier.wait()
            for n in range(EACH):
                ingest(store, [make_report(seq=i * 1000 + n + 1)])
                audit.record(store, audit.Actor(f"writer-{i}"), "test.write", f"n:{n}")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=write, args=(i, s)) for i, s in enumerate(handles)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, errors
        with handles[0].session() as s:
            rows = s.query(m.Report.prev_digest, m.Report.digest, m.Report.body).order_by(m.Report.id).all()
        assert len(rows) == WRITERS * EACH
        prev, forks = "", 0
        for r in rows:
            forks += r.prev_digest != prev or r.digest != chain_digest(prev, r.body)
            prev = r.digest
        assert forks == 0, f"the report chain forked {forks} times"
        check = audit.verify_audit(handles[0])
        assert check.ok, check
    finally:
        for s in handles:
            s.close()


def test_a_second_serve_on_one_data_dir_refuses_naming_the_first(tmp_path):
    first = start_collector(tmp_path)
    try:
        second = subprocess.run([*COLLECTOR, "--data-dir", str(first.data_dir), "serve", "--port",
                                 str(free_port())], capture_output=True, text=True, timeout=60, env=first.env)
        assert second.returncode != 0
        assert f"pid {first.proc.pid}" in second.stderr and "in use by another collector" in second.stderr
    finally:
        first.stop()
    # Once the first has stopped, the directory is free again.
    again = start_collector(tmp_path)
    again.stop()
