"""A whole agent process upgrading itself: version A runs, the signed policy names B, A downloads and verifies B,
stops cleanly and execs it (same PID); B's first acknowledged report commits it — or, when B cannot report,
B's watchdog execs A again, and A says why in its reports.

"A" and "B" are the real agent code (agent.cli main) started through a small launcher script that says what a
PyInstaller build says (``sys.frozen``, ``sys.executable`` = the launcher) and gives the version; B's launcher
is the release file the collector stand-in (tests/release_collector.py, real HTTP: policy, reports, releases
with Range) serves, signed with a release key. The lead's end-to-end test does the same with real builds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519 as crypto

from agent.upgrade import state as st
from agent.upgrade import upgrade_path
from tests.conftest import REPO
from tests.policy_collector import TOKEN, envelope, key_object
from tests.release_collector import ReleaseCollector

POINT = "620102001001"
SPEEDUP = "60"  # intervals and the 10-minute watchdog divided by 60: a trial has 10 s to report


def launcher(version: str, pad: int = 0) -> bytes:
    """An agent "binary" of ``version``: the real agent, saying what a frozen build says (``pad`` bytes of
    comment make its download take a few seconds at 64 kbit/s)."""
    return f"""#!{sys.executable}
# {"x" * pad}
import os, sys
sys.path.insert(0, {str(REPO)!r})
sys.frozen = True
sys.executable = os.path.abspath(sys.argv[0])
import agent
agent.__version__ = {version!r}
from agent.cli import main
sys.exit(main())
""".encode()


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def point(tmp_path):
    """The collector stand-in serving B (0.2.0) under a policy that names it, and A (0.1.0) enrolled to it."""
    collector = ReleaseCollector().start()
    policy_key, release_key = crypto.Ed25519PrivateKey.generate(), collector.key
    # 40 kB at 64 kbit/s: about four seconds of download, in which A writes reports of its own.
    collector.add("0.2.0", launcher("0.2.0", pad=40_000), platform=f"linux-{os.uname().machine}")
    policy = {"intervals": {"network": "60s", "devices": "1h", "compliance": "1h", "identity": "1h"},
              "core_network": {"timeout": "300ms", "tcp": [{"target": f"127.0.0.1:{collector.url.rsplit(':', 1)[1]}",
                                                             "name": "县级平台"}]},
              "agent": {"version": "0.2.0", "window": "00:00-24:00", "max_kbps": 64}}
    collector.policy = envelope(policy, POINT, [policy_key])
    state = tmp_path / "state"
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f'point: {{code: "{POINT}"}}\ncollector: {{url: "{collector.url}", timeout: 2s}}\n'
                   f"state_dir: {state}\n", encoding="utf-8")
    state.mkdir(mode=0o700)
    (state / "token").write_text(TOKEN)
    (state / "agent_id").write_text("agent-1")
    (state / "policy_keys.json").write_text(json.dumps([key_object(policy_key)]))
    (state / "release_keys.json").write_text(json.dumps([key_object(release_key)]))
    a = tmp_path / "a" / "pointwatch-agent"
    a.parent.mkdir()
    a.write_bytes(launcher("0.1.0"))
    a.chmod(0o755)
    yield collector, a, cfg, state
    collector.stop()


def start(a, cfg, tmp_path) -> subprocess.Popen:
    env = {**os.environ, "POINTWATCH_AGENT_TEST_SPEEDUP": SPEEDUP}
    env.pop("PYTHONPATH", None)  # the launcher finds the code itself, as a build carries it
    log = open(tmp_path / "agent.out", "ab")  # noqa: SIM115 - the child keeps it
    return subprocess.Popen([str(a), "run", "--config", str(cfg)], env=env, stdout=log, stderr=subprocess.STDOUT)


def versions(collector) -> list[str]:
    return [r["agent_version"] for r in list(collector.reports)]


def upgrade_results(collector, version) -> list[dict]:
    return [x for r in list(collector.reports) if r["agent_version"] == version
            for x in r["results"] if x["check"] == "agent.upgrade"]


def stop(proc) -> int:
    proc.terminate()
    return proc.wait(timeout=30)


def test_a_upgrades_to_b_in_place_and_b_reports_and_commits(point, tmp_path):
    collector, a, cfg, state = point
    collector.refuse_sender = "0.1.0"  # A's reports wait in the outbox: B must send them
    proc = start(a, cfg, tmp_path)
    try:
        wait_for(lambda: "0.2.0" in versions(collector), 90, "a report of 0.2.0")
        wait_for(lambda: (st.load(upgrade_path(state))["active"] or {}).get("version") == "0.2.0", 30, "the commit")
        wait_for(lambda: any(u["status"] == "ok" for u in upgrade_results(collector, "0.2.0")), 60, "0.2.0 says ok")
        assert proc.poll() is None  # the same process (PID) throughout: A exec'd B
    finally:
        assert stop(proc) == 0
    doc = st.load(upgrade_path(state))
    assert doc["trial"] is None and doc["previous"] == {"version": "0.1.0", "path": str(a)}
    assert doc["active"]["path"] == str(state / "releases" / "0.2.0" / "pointwatch-agent")
    seen = versions(collector)
    assert seen.count("0.1.0") >= 2 and set(collector.sent_by) == {"0.2.0"}  # A's reports, sent by B
    assert set(seen[seen.index("0.2.0"):]) == {"0.2.0"}  # A's queued ones first, then only B's
    ok = [u for u in upgrade_results(collector, "0.2.0") if u["status"] == "ok"][0]
    assert ok["message"] == "按策略运行版本 0.2.0" and ok["details"]["target"] == "0.2.0"
    # Every report of the outbox went out once (A's last ones sent by B); nothing was lost on the way.
    seqs = sorted(r["seq"] for r in collector.reports)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_a_b_that_cannot_report_rolls_back_to_a_by_itself(point, tmp_path):
    collector, a, cfg, state = point
    collector.refuse_sender = "0.2.0"  # B's process cannot report (503 for every batch it sends)
    proc = start(a, cfg, tmp_path)
    try:
        wait_for(lambda: st.load(upgrade_path(state))["failed"], 120, "the rollback")
        wait_for(lambda: any(u["status"] == "fail" for u in upgrade_results(collector, "0.1.0")), 60,
                 "A reporting the failed upgrade")
        assert proc.poll() is None
    finally:
        assert stop(proc) == 0
    doc = st.load(upgrade_path(state))
    assert doc["active"] is None and doc["trial"] is None and doc["last"]["event"] == "rolled_back"
    assert [(f["version"], f["reason"]) for f in doc["failed"]] == [("0.2.0", st.ROLLED_BACK)]
    failed = [u for u in upgrade_results(collector, "0.1.0") if u["status"] == "fail"][-1]
    assert failed["details"] == {**failed["details"], "running": "0.1.0", "target": "0.2.0", "reason": "rolled_back",
                                 "state": "failed"}
    assert "已自动回退" in failed["message"]
    assert len(collector.file_requests()) == 1  # B was downloaded once and not tried again
