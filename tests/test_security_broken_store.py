"""A broken store does not look healthy (issue 18, item 12).

/readyz said "ready" with the disk full or the directory read-only (it only ran SELECT 1); a read-only store
answered "暂时不可用" for ever; the WAL checkpointer logged a traceback every second. Now readiness commits a
write, a read-only store is a clear permanent error when ``serve`` starts, and a repeating failure is logged
once, then counted.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time

import pytest
from fastapi.testclient import TestClient

from collector.app import create_app
from collector.settings import Settings
from collector.store import Store, StoreError
from collector.upkeep.checkpoint import WalCheckpointer
from tests.conftest import require_root, require_tool
from tests.livecollector import COLLECTOR


@pytest.fixture
def small_disk(tmp_path):
    require_root("mounting a small tmpfs as the store's directory")
    require_tool("mount", "mount")
    mnt = tmp_path / "data"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def ready(store, tmp_path):
    client = TestClient(create_app(Settings(data_dir=tmp_path / "settings"), store=store))
    return client.get("/readyz")


def test_readyz_is_not_ready_on_a_full_disk(small_disk, tmp_path):
    store = Store(f"sqlite:///{small_disk / 'pointwatch.db'}")
    store.upgrade()
    try:
        assert ready(store, tmp_path).status_code == 200
        filler = small_disk / "filler"
        with open(filler, "wb") as fh:  # the disk full to the last byte
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError:
                pass
        r = ready(store, tmp_path)
        assert r.status_code == 503 and "bytes free" in r.text, r.text
        filler.unlink()
        assert ready(store, tmp_path).status_code == 200
    finally:
        store.close()


def test_a_read_only_store_is_not_ready_and_refuses_to_serve(small_disk, tmp_path):
    store = Store(f"sqlite:///{small_disk / 'pointwatch.db'}")
    store.upgrade()
    store.close()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    store = Store(f"sqlite:///{small_disk / 'pointwatch.db'}")
    try:
        r = ready(store, tmp_path)
        assert r.status_code == 503 and "read-only" in r.text, r.text
    finally:
        store.close()
    t0 = time.monotonic()
    serve = subprocess.run([*COLLECTOR, "--data-dir", str(small_disk), "serve", "--port", "0"],
                           capture_output=True, text=True, timeout=60)
    assert serve.returncode != 0 and time.monotonic() - t0 < 30
    assert "cannot be written" in serve.stderr or "read-only" in serve.stderr, serve.stderr[-2000:]


def test_a_read_only_postgresql_is_not_ready_and_refuses_to_serve(pg_database, tmp_path, monkeypatch):
    import psycopg

    schema = f"ro_{os.getpid()}"
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
    db_url = "postgresql+psycopg://" + pg_database.split("://", 1)[1] + f"?options=-csearch_path%3D{schema}"
    writable = Store(db_url)
    writable.upgrade()
    writable.close()
    read_only = db_url + "%20-cdefault_transaction_read_only%3Don"
    store = Store(read_only)
    try:
        r = ready(store, tmp_path)
        assert r.status_code == 503 and "read-only" in r.text, r.text
    finally:
        store.close()
    monkeypatch.setenv("POINTWATCH_DATABASE_URL", read_only)
    with pytest.raises(StoreError) as refused:
        Settings(data_dir=tmp_path / "pg").open_store(serving=True)
    assert refused.value.code == "read_only" and "read-only" in str(refused.value)


class _BrokenStore:
    background_checkpoints = False

    def __init__(self):
        self.engine = self

    def dispose(self):
        pass

    def wal_checkpoint(self):
        raise OSError(28, "No space left on device")


def test_a_failing_checkpoint_is_logged_once_then_counted(caplog):
    checkpointer = WalCheckpointer(_BrokenStore(), every_s=0.01)
    checkpointer.failures.summary_s = 0.2
    with caplog.at_level(logging.ERROR, logger="pointwatch.store"):
        checkpointer._stop.clear()
        stopper = threading.Timer(0.5, checkpointer._stop.set)
        stopper.start()
        checkpointer._loop()
    records = [r for r in caplog.records if "wal_checkpoint_failed" in r.getMessage()]
    assert checkpointer.failures.count >= 20  # tried every round
    assert sum(1 for r in records if r.exc_info) == 1  # one traceback
    assert 1 <= len(records) <= 5 and "repeated=" in records[-1].getMessage()
