"""Plumbing for the fault tests (tests/test_faults_*.py).

- :class:`Collector`: a real `pointwatch-collector serve` process on a fixed port and store (SQLite data
  directory or a PostgreSQL URL), which can be killed with SIGKILL and started again on the same store.
- :class:`Fleet`: light agents made of the agent's own Outbox and Sender (the code `pointwatch-agent run`
  uses), one thread pair per point, in this process: many agents cost little, and the test sees which
  reports the collector acknowledged with a 2xx.
- :class:`PrivatePostgres`: a throw-away PostgreSQL server (initdb + pg_ctl) in a temporary directory on a
  free port, so a test can restart it without touching the machine's shared server.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from agent import wire
from agent.outbox import Outbox
from agent.sender import Sender
from collector.accounts import users
from collector.store import points
from tests.conftest import REPO, free_port, require

REGION = "甘肃省/兰州市/城关区/故障镇/故障村"
N_RESULTS = 6  # agent results per report (the collector adds agent.clock_skew: one more stored row)


def wait_for(predicate, timeout: float, what: str, step: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def http_json(url: str, token: str | None = None, timeout: float = 10) -> dict:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (OSError, urllib.error.URLError):
        return False


# -- the collector ---------------------------------------------------------------------------------------
class Collector:
    def __init__(self, workdir: Path, database_url: str | None = None, host: str = "127.0.0.1",
                 netns: str | None = None, config: Path | None = None):
        self.workdir, self.data = workdir, workdir / "data"
        self.port, self.host, self.netns = free_port(), host, netns
        self.env = {k: v for k, v in os.environ.items() if k != "POINTWATCH_DATABASE_URL"}
        self.env["PYTHONUNBUFFERED"] = "1"
        if database_url:
            self.env["POINTWATCH_DATABASE_URL"] = database_url
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.config = ["--config", str(config)] if config else []

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def cli(self, *args: str) -> str:
        return subprocess.run([sys.executable, "-m", "collector.cli", "--data-dir", str(self.data), *args],
                              check=True, capture_output=True, text=True, timeout=60, env=self.env,
                              cwd=REPO).stdout.strip()

    def start(self, wait: bool = True) -> Collector:
        self.starts += 1
        cmd = [sys.executable, "-m", "collector.cli", "--data-dir", str(self.data), *self.config, "serve", "--host",
               "0.0.0.0" if self.netns else self.host, "--port", str(self.port)]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        out = open(self.workdir / "collector.log", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=REPO)
        out.close()
        if wait and not self.netns:
            wait_for(lambda: self._alive() and http_ok(self.base + "/readyz"), 60, "collector /readyz")
        return self

    def _alive(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"collector exited: {self.log()[-3000:]}")
        return True

    def log(self) -> str:
        return (self.workdir / "collector.log").read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, in-flight requests are cut mid-way."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def reports(self, code: str, token: str) -> list[dict]:
        return http_json(f"{self.base}/api/v1/points/{code}/reports?from=2000-01-01T00:00:00Z"
                         f"&to=2100-01-01T00:00:00Z", token)["reports"]


# -- light agents: the agent's own outbox and sender ------------------------------------------------------
class AckRecordingOutbox(Outbox):
    """The agent's outbox, noting every report_id the collector acknowledged with a 2xx."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.acked: set[str] = set()

    def ack(self, batch, answer=None):
        if answer and "rejected" not in answer:
            self.acked.update(json.loads(b)["report_id"] for b in batch.bodies)
        super().ack(batch, answer)


class StatusRecordingSender(Sender):
    """The agent's sender, noting the HTTP status (or None: no answer) of every failed attempt."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.failed_statuses: list[int | None] = []

    def _send_error(self, exc, batch):
        self.failed_statuses.append(exc.status)
        return super()._send_error(exc, batch)


def make_report(code: str, agent_id: str, seq: int) -> dict:
    now = wire.utcnow()
    results = [wire.Result("net.core.tcp", f"10.10.1.{i}:443", "ok", "端口可连接", value=0.001 * (i + 1),
                           unit="seconds", details={"loss_ratio": 0.0},
                           observed_at=now - timedelta(milliseconds=10 * i)) for i in range(N_RESULTS)]
    return wire.report_to_dict(wire.Report(
        report_id=str(uuid.uuid4()), seq=seq, agent_id=agent_id, point_code=code, agent_version="0.1.0",
        collected_at=now, sent_at=now, host=wire.Host("pc-" + code, "Linux", None,
                                                      wire.Fingerprint("m-" + code, "SN", [])),
        results=results))


class LightAgent:
    def __init__(self, code: str, token: str, url: str, state: Path, speedup: float):
        self.code = code
        self.agent_id = "light-" + code
        self.outbox = AckRecordingOutbox(state / f"{code}.sqlite3", 100_000)
        self.sender = StatusRecordingSender(self.outbox, url, lambda: token, lambda: self.agent_id,
                                            timeout=10.0, speedup=speedup)
        self.written: list[int] = []  # seqs

    def produce(self) -> None:
        seq = self.outbox.add(lambda s, _note: make_report(self.code, self.agent_id, s))
        self.written.append(seq)
        self.sender.poke()


class Fleet:
    """``n`` light agents writing a report every ``every`` seconds each while :meth:`run` is on."""

    def __init__(self, codes_tokens: dict[str, str], url: str, state: Path, every: float = 0.1,
                 speedup: float = 20.0):
        state.mkdir(parents=True, exist_ok=True)
        self.agents = [LightAgent(c, t, url, state, speedup) for c, t in codes_tokens.items()]
        self.every = every
        self._producing = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Fleet:
        for a in self.agents:
            a.sender.start()
        self._producing.set()
        self._thread = threading.Thread(target=self._produce, daemon=True)
        self._thread.start()
        return self

    def _produce(self) -> None:
        while self._producing.is_set():
            for a in self.agents:
                a.produce()
            time.sleep(self.every)

    def stop_producing(self) -> None:
        self._producing.clear()
        if self._thread:
            self._thread.join(10)

    def drained(self) -> bool:
        return all(a.outbox.depth() == 0 for a in self.agents)

    def stop(self) -> None:
        self.stop_producing()
        for a in self.agents:
            a.sender.stopping.set()
            a.sender.wake.set()
        for a in self.agents:
            a.sender.join(15)
            a.outbox.close()


def register_points(database_url: str, n: int, prefix: str = "7") -> dict[str, str]:
    """n points and an agent token for each, written straight into the store (as the CLI does offline)."""
    from collector.store import Store

    store = Store(database_url)
    store.upgrade()
    tokens = {}
    for i in range(n):
        code = f"{prefix}{i:011d}"
        points.upsert_point(store, code, f"故障点{i}", REGION, report_interval_s=60)
        tokens[code] = users.create_token(store, "agent", point_code=code)
    store.close()
    return tokens


def admin_token(database_url: str) -> str:
    from collector.store import Store

    store = Store(database_url)
    try:
        return users.create_token(store, "admin")
    finally:
        store.close()


# -- a private PostgreSQL --------------------------------------------------------------------------------
class PrivatePostgres:
    def __init__(self, workdir: Path):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        require(bool(bins), "pg_ctl not found (install the Debian package 'postgresql')")
        self.bin = Path(bins[-1]).parent
        self.dir = workdir / "pg"
        self.port = free_port()
        self.user = None
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            try:
                self.user = pwd.getpwnam("postgres")
            except KeyError:
                require(False, "running as root without a 'postgres' user to run a private server")

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        if self.user is not None:
            cmd = ("runuser", "-u", "postgres", "--", *cmd)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=check)

    def init(self) -> PrivatePostgres:
        self.dir.mkdir(parents=True)
        if self.user is not None:
            for p in (self.dir, *self.dir.parents):
                if p == Path("/tmp") or p == p.parent:
                    break
                os.chmod(p, os.stat(p).st_mode | 0o711)  # let the postgres user reach its directory
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        self._run(str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-U", "postgres", "-A", "trust",
                  "--no-sync", "-E", "UTF8")
        return self

    def start(self, attempts: int = 5) -> None:
        # Right after an "immediate" stop (a crash) the old server's backends may still be exiting and hold
        # its shared memory, and the new postmaster refuses to start; a moment later it starts (CI saw this
        # once on a busy machine). A server that still does not start fails the test with its log.
        for _ in range(attempts):
            done = self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-l", str(self.dir / "log"),
                             "-w", "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=on",
                             "start", check=False)
            if done.returncode == 0:
                return
            time.sleep(2.0)
        log = (self.dir / "log").read_text(errors="replace")[-3000:] if (self.dir / "log").exists() else ""
        raise RuntimeError(f"private PostgreSQL did not start after {attempts} attempts: {done.stdout}"
                           f"{done.stderr}\n--- server log (end) ---\n{log}")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", mode, "-w", "stop", check=False)

    def url(self, db: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"

    def cleanup(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def assert_delivered_once(url: str, fleet: Fleet, collector: Collector, admin: str, must_have: set[str]) -> None:
    """Every report each light agent wrote is stored exactly once and whole; ``must_have`` ids among them."""
    from sqlalchemy import select

    from collector.store import Store
    from collector.store import models as m
    from collector.store.samples import by_report

    store = Store(url)
    try:
        with store.session() as s:
            stored_ids = set(s.scalars(select(m.Report.report_id)))
            seqs_by_point: dict[str, list[int]] = {}
            for code, seq in s.execute(select(m.Report.point_code, m.Report.seq)):
                seqs_by_point.setdefault(code, []).append(seq)
            report_pks = set(s.scalars(select(m.Report.id)))
            codes = sorted(set(seqs_by_point))
        # Samples as the history readers rebuild them (ingest stores a row only when a key changes): each
        # report's keyset with the state in force for every key of it.
        far = (datetime(2000, 1, 1, tzinfo=timezone.utc), datetime(2100, 1, 1, tzinfo=timezone.utc))
        per_report = {pk: len(keys) for code in codes
                      for _at, pk, _verdict, _, keys in by_report(store, code, *far)}
    finally:
        store.close()
    assert must_have <= stored_ids, "a report acknowledged with 2xx is not in the store"
    # Each written report stored once, read from the store itself (the API's view is checked below): every
    # agent's seqs 1..n, none twice, nothing else. (report_id is a unique column, so counting distinct ids
    # against rows could never fail; seq is not unique, so doubled reports show here.)
    for agent in fleet.agents:
        stored = sorted(seqs_by_point.pop(agent.code, []))
        assert stored == list(range(1, len(agent.written) + 1)), f"{agent.code}: lost or doubled in the store"
    assert not seqs_by_point, f"reports of points no agent wrote for: {sorted(seqs_by_point)}"
    # None half-stored: every report has all its samples (the agent's plus the collector's agent.clock_skew).
    assert set(per_report) == report_pks and set(per_report.values()) == {N_RESULTS + 1}
    for agent in fleet.agents:
        rows = collector.reports(agent.code, admin)
        seqs = sorted(r["seq"] for r in rows)
        assert seqs == list(range(1, len(agent.written) + 1)), f"{agent.code}: lost or doubled seqs"
        assert {r["report_id"] for r in rows} == agent.outbox.acked
