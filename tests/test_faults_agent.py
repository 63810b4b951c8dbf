"""Agent faults beyond tests/test_agent_service.py: a full disk under the state directory, and SIGKILL
while a request sits unanswered at the real collector (the machine "rebooted": the process restarted from
its state directory).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time

import pytest

from tests.agent_collector import RecordingCollector
from tests.conftest import free_port, require_root, require_tool
from tests.faultkit import Collector, wait_for
from tests.test_agent_service import (
    assert_every_report_once,
    enroll,
    last_seq,
    outbox_seqs,
    start_agent,
    stop_agent,
    write_config,
)


@pytest.fixture
def collector():
    # The recording stand-in, not the real collector: tests/agent_collector.py says why and where the real
    # one takes the same faults.
    c = RecordingCollector(free_port()).start()
    yield c
    c.stop()


def fill(path, chunk: int = 64 * 1024) -> int:
    """Write zeros to ``path`` until the file system says it is full; returns the bytes written."""
    written = 0
    with open(path, "wb", buffering=0) as f:
        block = b"\0" * chunk
        while True:
            try:
                written += f.write(block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if chunk <= 512:
                    return written
                chunk //= 8
                block = b"\0" * chunk


def outbox_results(collector: RecordingCollector, status: str) -> list[dict]:
    with collector.lock:
        return [x for r in collector.stored.values() for x in r["results"]
                if x["check"] == "agent.outbox" and x["status"] == status]


def test_disk_full_agent_keeps_checking_says_so_and_recovers(tmp_path, collector):
    require_root("mounting a size-limited tmpfs as the state directory")
    require_tool("mount", "mount")
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(state)], check=True)
    log = tmp_path / "agent.log"
    try:
        cfg = write_config(tmp_path, collector, state)
        assert enroll(cfg, collector).returncode == 0
        proc = start_agent(cfg, log)
        try:
            wait_for(lambda: len(collector.stored) >= 3, 30, "reports before the disk fills")
            # The collector goes away, so the outbox must grow; then the disk fills up.
            collector.stop()
            time.sleep(0.5)
            fill(state / "filler")
            wait_for(lambda: "outbox_unwritable" in log.read_text(encoding="utf-8", errors="replace"), 30,
                     "the agent to notice the full disk")
            seq_when_full = _seq_now(state)
            time.sleep(1.5)  # checks go on while the disk is full (held in memory)
            collector.start()
            wait_for(lambda: any("磁盘已满" in x["message"] for x in outbox_results(collector, "error")), 30,
                     "a report saying the disk is full")
            telling = [r for r in list(collector.stored.values()) for x in r["results"]
                       if x["check"] == "agent.outbox" and "磁盘已满" in x["message"]]
            told = min(telling, key=lambda r: r["seq"])
            assert told["seq"] > seq_when_full
            # The checks went on: the network job's reports (any job may be the first to tell) say so too.
            wait_for(lambda: any(x["check"] == "net.core.tcp" for r in list(collector.stored.values())
                                 if any("磁盘已满" in y["message"] for y in r["results"]) for x in r["results"]),
                     30, "a network report written while the disk was full")
            (state / "filler").unlink()
            wait_for(lambda: "outbox_writable_again" in log.read_text(encoding="utf-8", errors="replace"), 30,
                     "recovery once space is free")
            wait_for(lambda: any(r["seq"] > told["seq"] and any(x["check"] == "agent.outbox" and
                                                                 x["status"] == "ok" for x in r["results"])
                                 for r in list(collector.stored.values())), 30, "an ok outbox result after recovery")
            wait_for(lambda: len(outbox_seqs(state)) <= 10, 30, "the outbox to drain")
        finally:
            stop_agent(proc)
        assert_every_report_once(collector, state)
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


def _seq_now(state) -> int:
    try:
        return last_seq(state)
    except Exception:  # noqa: BLE001 - the meta table may be unreadable for a moment; 0 is a safe floor
        return 0


def test_agent_sigkill_while_the_real_collector_holds_its_request(tmp_path):
    """The collector is frozen (SIGSTOP) with the agent's request in its socket; the agent dies (SIGKILL),
    the collector thaws and stores what it read, the agent restarts from its state directory and re-sends:
    the collector counts each report once, and no seq is lost."""
    live = Collector(tmp_path)
    point = "620102001001"
    live.cli("points", "add", "--code", point, "--name", "某村医保服务点", "--region", "甘肃省/兰州市/城关区/某镇/某村")
    admin = live.cli("tokens", "create", "--role", "admin", "--person", "信息科")
    code = live.cli("enroll-code", "create", "--point", point)
    live.start()
    state = tmp_path / "state"
    cfg = write_config(tmp_path, _Url(live.port), state)
    done = subprocess.run([*_agent_cmd(), "enroll", "--config", str(cfg), "--code", code], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    log = tmp_path / "agent.log"
    try:
        for round_ in range(3):
            agent = start_agent(cfg, log)
            want = 3 * (round_ + 1)
            wait_for(lambda w=want: len(live.reports(point, admin)) >= w, 60, "reports to arrive")
            os.kill(live.proc.pid, signal.SIGSTOP)
            time.sleep(1.2)  # the agent's next send (every 0.5 s) is now waiting for an answer
            agent.kill()
            agent.wait(10)
            os.kill(live.proc.pid, signal.SIGCONT)
        agent = start_agent(cfg, log)
        wait_for(lambda: len(outbox_seqs(state)) <= 2, 60, "the restarted agent to re-send")
        stop_agent(agent)
        rows = live.reports(point, admin)
    finally:
        if live.proc and live.proc.poll() is None:
            os.kill(live.proc.pid, signal.SIGCONT)
        live.stop()
    stored = [r["seq"] for r in rows]
    assert len(stored) == len(set(stored)), "a report was stored twice"
    assert sorted(stored + outbox_seqs(state)) == list(range(1, last_seq(state) + 1)), "a report was lost"


class _Url:
    """write_config wants .url and .port of a collector."""

    def __init__(self, port: int):
        self.port, self.url = port, f"http://127.0.0.1:{port}"


def _agent_cmd() -> list[str]:
    import sys

    return [sys.executable, "-m", "agent.cli"]
