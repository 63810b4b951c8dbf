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
