"""`pointwatch-agent run` as a real process against a real HTTP collector: outages, kill -9, read-only state.

Intervals are shortened with the test-only POINTWATCH_AGENT_TEST_SPEEDUP (config intervals of 5 s become
0.5 s), so many cycles fit in a few seconds.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from agent import __version__
from agent.vocabulary import AGENT_UPGRADE
from tests.agent_collector import RecordingCollector
from tests.conftest import REPO, free_port, require_root, require_tool

SPEEDUP = "10"


def write_config(tmp: Path, collector: RecordingCollector, state_dir: Path) -> Path:
    cfg = tmp / "agent.yaml"
    cfg.write_text(f"""
point: {{code: "620102001001", name: 测试服务点}}
collector: {{url: "{collector.url}", timeout: 2s}}
state_dir: {state_dir}
intervals: {{network: 5s, devices: 5s, compliance: 5s, identity: 5s}}
core_network:
  timeout: 300ms
  tcp: [{{target: "127.0.0.1:{collector.port}", name: 省医保信息平台}}]
""", encoding="utf-8")
    return cfg


def agent_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "agent.cli", *args]


def start_agent(cfg: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "POINTWATCH_AGENT_TEST_SPEEDUP": SPEEDUP}
    with open(log, "ab") as out:
        return subprocess.Popen(agent_cmd("run", "--config", str(cfg)), cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def stop_agent(proc: subprocess.Popen) -> float:
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    return time.monotonic() - t0


def enroll(cfg: Path, collector: RecordingCollector, umask: int = 0o022) -> subprocess.CompletedProcess:
    return subprocess.run(agent_cmd("enroll", "--config", str(cfg), "--collector", collector.url,
                                    "--code", "ONE-TIME-123"), cwd=REPO, capture_output=True, text=True,
                          timeout=60, preexec_fn=lambda: os.umask(umask))


def outbox_seqs(state_dir: Path) -> list[int]:
    path = state_dir / "outbox.sqlite3"
    if not path.exists():
        return []
    db = sqlite3.connect(path)
    try:
        return [r[0] for r in db.execute("SELECT seq FROM reports ORDER BY id")]
    finally:
        db.close()


def last_seq(state_dir: Path) -> int:
    db = sqlite3.connect(state_dir / "outbox.sqlite3")
    try:
        try:
            row = db.execute("SELECT value FROM meta WHERE key='seq'").fetchone()
        except sqlite3.OperationalError:  # the agent has made the file and not yet its tables
            return 0
        return int(row[0]) if row else 0  # nor yet its first report
    finally:
        db.close()


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def assert_every_report_once(collector: RecordingCollector, state_dir: Path) -> list[int]:
    """Every seq ever written is either stored at the collector or still in the outbox, exactly once."""
    stored, waiting = collector.seqs(), outbox_seqs(state_dir)
    n = last_seq(state_dir)
    assert sorted(stored + waiting) == list(range(1, n + 1)), (stored, waiting, n)
    assert all(len(ids) == 1 for ids in collector.seq_ids.values()), "a seq was reused for another report"
    return stored


def assert_backlog_in_order(arrival: list[int]) -> None:
    """In order, except that fresh reports may overtake a long backlog (the sender sends fresh reports first):
    the arrivals are two increasing streams merged, i.e. no three reports ever arrived in decreasing order."""
    lowest_after: list[int] = []  # for each position, the smallest seq arriving after it
    smallest = float("inf")
    for seq in reversed(arrival):
        lowest_after.append(smallest)
        smallest = min(smallest, seq)
    lowest_after.reverse()
    highest_before = float("-inf")
    for i, seq in enumerate(arrival):
        assert not (highest_before > seq > lowest_after[i]), (
            f"seq {seq} arrived after a later report and before an earlier one: {arrival}")
        highest_before = max(highest_before, seq)


@pytest.fixture
def collector():
    # The recording stand-in, not the real collector: tests/agent_collector.py says why and where the real
    # one takes the same faults.
    c = RecordingCollector(free_port()).start()
    yield c
    c.stop()


def test_collector_outages_every_report_arrives_in_order_once(tmp_path, collector):
    state = tmp_path / "state"
    cfg = write_config(tmp_path, collector, state)
    assert enroll(cfg, collector).returncode == 0
    proc = start_agent(cfg, tmp_path / "agent.log")
    try:
        for _ in range(5):  # many cycles down and up again
            time.sleep(1.5)
            collector.stop()
            time.sleep(2.0)
            collector.start()
        # The backlog drains at a bounded rate: wait for it (bounded), not for a fixed time.
        wait_for(lambda: len(outbox_seqs(state)) <= 10, 90, "the backlog to drain after the last outage")
    finally:
        took = stop_agent(proc)
    assert took < 15, "SIGTERM must finish the checks, flush and exit within seconds"
    stored = assert_every_report_once(collector, state)
    assert len(stored) >= 10
    assert_backlog_in_order(collector.arrival)
    assert all(r["seqs"] == sorted(r["seqs"]) for r in collector.requests)
    assert len(outbox_seqs(state)) <= 10  # whatever was written in the last instant waits, durable
    # Batched: outages leave several reports per request; and every request gzipped (README: "gzip").
    assert max(len(r["seqs"]) for r in collector.requests) > 1
    assert all(r["gzip"] for r in collector.requests), "the agent sent a report batch without gzip"

    status = json.loads(subprocess.run(agent_cmd("status", "--config", str(cfg), "--json"), cwd=REPO,
                                       capture_output=True, text=True, timeout=60).stdout)
    assert status["enrolled"] is True and status["depth"] == len(outbox_seqs(state))
    assert set(status["jobs"]) >= {"network", "identity"} and status["last_ack_at"]
    assert sum(status["jobs"]["network"]["summary"].values()) == 1
    text = subprocess.run(agent_cmd("status", "--config", str(cfg)), cwd=REPO, capture_output=True,
                          text=True, timeout=60).stdout
    assert "待发送" in text and "最近一次确认" in text
    # The self-upgrade's word: in status, and in every report (a pip install under a policy naming no version).
    assert status["upgrade"]["running"] == __version__ and status["upgrade"]["self_upgrade"] is False
    assert f"代理升级：运行版本 {__version__}；策略未指定版本" in text
    upgrade = [[x for x in r["results"] if x["check"] == AGENT_UPGRADE] for r in collector.stored.values()]
    assert all(len(u) == 1 and u[0]["status"] == "ok" and u[0]["details"]["running"] == __version__ for u in upgrade)
    log = (state / "logs" / "agent.log").read_text(encoding="utf-8")
    assert "point=620102001001" in log and "send_failed" in log
    assert collector.token not in log


def test_kill_9_mid_send_and_at_random_moments_loses_and_doubles_nothing(tmp_path, collector):
    state = tmp_path / "state"
    cfg = write_config(tmp_path, collector, state)
    assert enroll(cfg, collector).returncode == 0
    log = tmp_path / "agent.log"
    collector.answer_delay = 3.0  # the collector stores the batch, the agent dies before the answer
    proc = start_agent(cfg, log)
    assert collector.in_request.wait(30)
    proc.kill()
    proc.wait()
    collector.answer_delay = 0.0
    in_flight = set(collector.stored)
    assert in_flight
    rng = random.Random(5)
    for _ in range(6):
        proc = start_agent(cfg, log)
        time.sleep(rng.uniform(0.2, 1.5))
        proc.kill()
        proc.wait()
    proc = start_agent(cfg, log)
    wait_for(lambda: not outbox_seqs(state) or len(collector.seqs()) > len(in_flight) + 5, 30, "the re-send")
    time.sleep(1.0)
    stop_agent(proc)
    assert_every_report_once(collector, state)
    assert collector.duplicates >= 1  # the batch in flight at the kill was sent again, and counted once


def test_token_file_is_0600_never_logged_and_enrolment_sends_the_fingerprint(tmp_path, collector):
    state = tmp_path / "state"
    cfg = write_config(tmp_path, collector, state)
    done = enroll(cfg, collector, umask=0)  # even a careless umask gives no one else the token
    assert done.returncode == 0, done.stdout + done.stderr
    token = state / "token"
    assert token.read_text() == collector.token
    assert token.stat().st_mode & 0o777 == 0o600
    assert (state / "agent_id").read_text() == "agent-1"
    sent = collector.enrolments[0]
    assert sent["code"] == "ONE-TIME-123" and sent["point_code"] == "620102001001" and sent["hostname"]
    assert set(sent["fingerprint"]) == {"machine_id", "serial", "macs"}
    assert collector.token not in done.stdout + done.stderr
    for f in state.rglob("*.log*"):
        assert collector.token not in f.read_text(encoding="utf-8")
    assert "注册成功" in done.stdout
    bad = subprocess.run(agent_cmd("enroll", "--config", str(cfg), "--collector", f"http://127.0.0.1:{free_port()}",
                                   "--code", "X"), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "注册失败" in bad.stdout
    assert token.read_text() == collector.token  # a failed enrolment keeps the old token


def test_read_only_state_dir_agent_keeps_checking_says_so_and_recovers(tmp_path, collector):
    require_root("mounting a read-only tmpfs as the state directory")
    require_tool("mount", "mount")
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(state)], check=True)
    try:
        cfg = write_config(tmp_path, collector, state)
        assert enroll(cfg, collector).returncode == 0
        (state / "agent_id").unlink()
        subprocess.run(["mount", "-o", "remount,ro", str(state)], check=True)
        proc = start_agent(cfg, tmp_path / "agent.log")
        try:
            wait_for(lambda: len(collector.stored) >= 4, 30, "reports sent from memory")
            told = [r for r in collector.stored.values()
                    for x in r["results"] if x["check"] == "agent.outbox" and x["status"] == "error"]
            assert told and "只读" in next(x["message"] for x in told[0]["results"] if x["check"] == "agent.outbox")
            # Checks went on: a network report (any job may be the first to tell) carries the same warning.
            wait_for(lambda: any(x["check"] == "net.core.tcp" for r in list(collector.stored.values())
                                 if any(y["check"] == "agent.outbox" and y["status"] == "error"
                                        for y in r["results"]) for x in r["results"]),
                     30, "a network report sent while the state directory was read-only")
            subprocess.run(["mount", "-o", "remount,rw", str(state)], check=True)
            wait_for(lambda: (state / "outbox.sqlite3").exists() and last_seq(state) > len(collector.stored) - 1
                     and any(x["check"] == "agent.outbox" and x["status"] == "ok"
                             for r in collector.stored.values() for x in r["results"]), 30, "recovery")
            time.sleep(1.0)
        finally:
            stop_agent(proc)
        assert_every_report_once(collector, state)
        log = (tmp_path / "agent.log").read_text(encoding="utf-8")
        assert "outbox_unwritable" in log and "outbox_writable_again" in log
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


def test_systemd_unit_verifies(tmp_path):
    analyze = require_tool("systemd-analyze", "systemd")
    unit = (REPO / "configs/systemd/pointwatch-agent.service").read_text()
    # verify wants ExecStart's binary to exist; point it at this checkout's interpreter.
    fake_bin = tmp_path / "pointwatch-agent"
    fake_bin.write_text(f"#!/bin/sh\nexec {sys.executable} -m agent.cli \"$@\"\n")
    fake_bin.chmod(0o755)
    unit = unit.replace("/opt/pointwatch-agent/bin/pointwatch-agent", str(fake_bin))
    path = tmp_path / "pointwatch-agent.service"
    path.write_text(unit)
    done = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"})
    problems = [line for line in (done.stdout + done.stderr).splitlines()
                if "pointwatch-agent.service" in line]
    assert done.returncode == 0 and not problems, done.stdout + done.stderr
    for needed in ("User=pointwatch-agent", "AmbientCapabilities=CAP_NET_RAW", "ProtectSystem=strict",
                   "NoNewPrivileges=yes", "PrivateTmp=yes", "StateDirectory=pointwatch-agent",
                   "Restart=on-failure"):
        assert needed in unit


def test_windows_service_module_is_not_imported_on_linux():
    done = subprocess.run(agent_cmd("service", "install", "--config", "x.yaml"), cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "Windows" in done.stderr
    probe = subprocess.run([sys.executable, "-c", "import sys, agent.cli, agent.service, agent.scheduler, "
                            "agent.sender; print('agent.winservice' in sys.modules)"], cwd=REPO,
                           capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == "False"


def test_real_collector_restarted_many_times_stores_every_report_once_in_order(tmp_path):
    """The same outage test against `pointwatch-collector serve` itself, restarted on its data directory."""
    import urllib.request

    data, port = tmp_path / "data", free_port()
    env = {k: v for k, v in os.environ.items() if k != "POINTWATCH_DATABASE_URL"}

    def cli(*args) -> str:
        return subprocess.run([sys.executable, "-m", "collector.cli", "--data-dir", str(data), *args], check=True,
                              capture_output=True, text=True, timeout=60, env=env, cwd=REPO).stdout.strip()

    def serve() -> subprocess.Popen:
        out = open(tmp_path / "collector.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([sys.executable, "-m", "collector.cli", "--data-dir", str(data), "serve",
                                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        wait_for(lambda: _http_ok(f"http://127.0.0.1:{port}/healthz"), 30, "collector /healthz")
        return proc

    point = "620102001001"
    cli("points", "add", "--code", point, "--name", "某村医保服务点", "--region", "甘肃省/兰州市/城关区/某镇/某村")
    admin = cli("tokens", "create", "--role", "admin", "--person", "信息科")
    code = cli("enroll-code", "create", "--point", point)
    server = serve()
    fake = RecordingCollector(port)  # only for write_config's url/port
    state = tmp_path / "state"
    cfg = write_config(tmp_path, fake, state)
    enrolled = subprocess.run(agent_cmd("enroll", "--config", str(cfg), "--code", code), cwd=REPO,
                              capture_output=True, text=True, timeout=60)
    assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
    def stored_rows() -> list[dict]:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/points/{point}/reports",
                                     headers={"Authorization": f"Bearer {admin}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())["reports"]

    agent = start_agent(cfg, tmp_path / "agent.log")
    try:
        for _ in range(3):
            time.sleep(2.0)
            server.terminate()
            server.wait(20)
            time.sleep(2.0)
            server = serve()
        # On a loaded machine the agent's backoff may still be waiting out the last outage: wait for the
        # reports to arrive rather than for a fixed time.
        wait_for(lambda: len(stored_rows()) >= 5, 90, "five reports stored after the restarts")
    finally:
        stop_agent(agent)
    try:
        rows = stored_rows()
    finally:
        server.terminate()
        server.wait(20)
    stored = [r["seq"] for r in sorted(rows, key=lambda r: (r["received_at"], r["seq"]))]
    # Order is asserted against the recording collector, which sees each request; here a restart can leave
    # a backlog over one batch, and then the newest reports rightly go first.
    waiting = outbox_seqs(state)
    assert len(stored) == len(set(stored)), "the collector stored a report twice"
    assert sorted(stored + waiting) == list(range(1, last_seq(state) + 1))
    assert len(stored) >= 5


def _http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def test_running_agent_serves_its_own_metrics_when_asked(tmp_path, collector):
    port = free_port()
    cfg = write_config(tmp_path, collector, tmp_path / "state")
    cfg.write_text(cfg.read_text(encoding="utf-8") + f'metrics: {{listen: "127.0.0.1:{port}"}}\n', encoding="utf-8")
    proc = start_agent(cfg, tmp_path / "agent.log")
    try:
        def scraped():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                    return resp.read().decode()
            except OSError:
                return ""

        wait_for(lambda: 'pointwatch_check_status{check="net.core.tcp"' in scraped(), 30, "the agent's /metrics")
        text = scraped()
    finally:
        stop_agent(proc)
    assert 'pointwatch_check_status{check="net.core.tcp",point="620102001001",target="省医保信息平台"} 0\n' in text
    assert scraped() == ""  # the endpoint stops with the agent
