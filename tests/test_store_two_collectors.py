"""Two real collectors (uvicorn processes) on one PostgreSQL database behave as one.

The same reports sent to both at the same moment are stored once, the point's hash chain stays linear,
and the background maintenance job runs once between them.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time

import httpx
import psycopg
import pytest

from collector.accounts import users
from collector.store import Store, points
from collector.store import models as m
from tests.conftest import REPO, free_port
from tests.helpers import POINT, REGION, report_json


@pytest.fixture
def pg_store_url(pg_database):
    schema = f"two_{os.getpid()}"
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
    return "postgresql+psycopg://" + pg_database.split("://", 1)[1] + f"?options=-csearch_path%3D{schema}"


def start_collector(url: str, port: int, tmp_path, name: str) -> subprocess.Popen:
    data = tmp_path / name
    data.mkdir()
    (data / "collector.yaml").write_text("retention: {interval_s: 3600}\n", encoding="utf-8")
    env = {**os.environ, "POINTWATCH_DATABASE_URL": url, "PYTHONPATH": str(REPO)}
    log = open(data / "log.txt", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "collector.cli", "--config", str(data / "collector.yaml"),
                             "--data-dir", str(data), "serve", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "collector exited during start-up"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"collector on {port} not ready")


def test_two_collectors_store_each_report_once(pg_store_url, tmp_path):
    setup = Store(pg_store_url)
    setup.upgrade()
    points.upsert_point(setup, POINT, "某村医保服务点", REGION)
    token = users.create_token(setup, "agent", point_code=POINT)
    ports = [free_port(), free_port()]
    procs = [start_collector(pg_store_url, p, tmp_path, f"c{i}") for i, p in enumerate(ports)]
    try:
        for port, proc in zip(ports, procs, strict=True):
            wait_ready(port, proc)
        batches = [[report_json(seq=b * 5 + i + 1) for i in range(5)] for b in range(8)]
        totals = {"accepted": 0, "duplicates": 0}
        lock = threading.Lock()

        def send(port, batch, barrier):
            with httpx.Client(timeout=30) as client:
                barrier.wait()
                r = client.post(f"http://127.0.0.1:{port}/api/v1/reports", json={"reports": batch},
                                headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 202, r.text
            with lock:
                for k in totals:
                    totals[k] += r.json()[k]

        for batch in batches:  # each batch hits both collectors at the same instant
            barrier = threading.Barrier(2)
            threads = [threading.Thread(target=send, args=(p, batch, barrier)) for p in ports]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert totals == {"accepted": 40, "duplicates": 40}
        with setup.session() as s:
            rows = s.query(m.Report.report_id, m.Report.seq, m.Report.body, m.Report.prev_digest,
                           m.Report.digest).order_by(m.Report.id).all()
        # Each report sent stored exactly once: report_id is a unique column, so compare with what was sent
        # (a count of distinct ids would equal the row count whatever happened).
        assert len(rows) == 40
        assert {r.report_id for r in rows} == {rep["report_id"] for batch in batches for rep in batch}
        assert sorted(r.seq for r in rows) == list(range(1, 41))
        prev = ""
        for r in rows:  # one linear chain, whichever collector stored each report (the documented formula)
            digest = hashlib.sha256((prev + "\n" + r.body).encode("utf-8")).hexdigest()
            assert r.prev_digest == prev and r.digest == digest
            prev = r.digest

        # Both collectors' maintenance loops wake ~5 s after start; exactly one of them does the round.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with setup.session() as s:
                job = s.get(m.JobState, "maintenance")
                if job is not None and job.runs:
                    break
            time.sleep(0.5)
        time.sleep(3)  # give the slower collector its turn too
        with setup.session() as s:
            job = s.get(m.JobState, "maintenance")
            assert job is not None and job.runs == 1, job and job.runs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        setup.close()


def _wait_until_blocked(pg_url: str, sessions: int) -> None:
    """Until ``sessions`` connections of this database wait on a lock (the race below is then set up)."""
    deadline = time.monotonic() + 30
    with psycopg.connect(pg_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            n = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                             "AND wait_event_type = 'Lock'").fetchone()[0]
            if n >= sessions:
                return
            time.sleep(0.05)
    raise AssertionError(f"{sessions} writers never queued on the lock")


@pytest.mark.parametrize("table", ["point_scores", "metric_lines"])
def test_two_score_keepers_saving_one_point_at_once_both_succeed(pg_database, pg_store_url, table):
    """Two collectors' score keepers rescore the same points at the same moment: at start-up (every point
    never scored is due on each) and on every minute's tick (every point gone silent). Both saves must
    succeed and leave one row per point (and family); a save that fails loses the whole batch's scores.
    The row is held locked meanwhile, so both saves queue on it and run one after the other, as they
    would when their passes overlap."""
    from datetime import datetime, timedelta, timezone

    from collector.store import metriclines, pointscores

    store = Store(pg_store_url)
    store.upgrade()
    points.upsert_point(store, POINT, "某村医保服务点", REGION)
    now = datetime.now(timezone.utc)

    def score(earned: float, at: datetime) -> dict:
        return {"point_code": POINT, "profile": "lanzhou-basic-2023", "earned": earned, "automatic_points": 60.0,
                "items": {"network.core": True}, "scored_at": at}

    def save(n: int):
        if table == "point_scores":
            pointscores.save_scores(store, [score(10.0 + n, now + timedelta(seconds=n))])
        else:
            metriclines.save_metric_lines(store, {POINT: (REGION, {"pointwatch_check_status": f"body {n}\n"})})

    save(0)  # the row both will replace
    errors: list[BaseException] = []

    def keeper(n: int) -> None:
        try:
            save(n)
        except BaseException as exc:  # noqa: BLE001 - the failure is what this test reports
            errors.append(exc)

    schema = pg_store_url.rsplit("%3D", 1)[1]
    with psycopg.connect(pg_database) as holder:  # the other collector's pass, still in its transaction
        holder.execute(f"SET search_path TO {schema}")
        holder.execute(f"SELECT 1 FROM {table} WHERE point_code = %s FOR UPDATE", (POINT,))
        threads = [threading.Thread(target=keeper, args=(n,)) for n in (1, 2)]
        threads[0].start()
        _wait_until_blocked(pg_database, 1)
        threads[1].start()
        _wait_until_blocked(pg_database, 2)
    for t in threads:
        t.join(30)
    try:
        assert not errors, errors
        with store.session() as s:
            if table == "point_scores":
                rows = s.query(m.PointScore.earned).filter_by(point_code=POINT).all()
                assert rows == [(12.0,)]  # the newest score (scored last) is the one kept
            else:
                rows = s.query(m.MetricLines.body).filter_by(point_code=POINT).all()
                assert len(rows) == 1 and rows[0].body in ("body 1\n", "body 2\n")
    finally:
        store.close()
