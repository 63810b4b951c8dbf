"""Self-upgrade end to end (issue 23) with real self-contained Linux builds and a real collector process.

Three releases are built from these sources (tests/linux/build.py): A, the version of this tree; B, the same
with a higher version; BAD, a higher version still whose reports cannot reach the collector (its report
URL points at a closed loopback port: a planted bug, built into a real binary). The release key is made and
used offline with the collector's own CLI; the collector only holds its public key.

1. A, enrolled, runs; the county policy names B: A downloads it, verifies it, hands over, and B reports;
   the process is the same one (exec) and no report was lost (the seq numbers have no gap).
2. The policy names BAD: B hands over to it, BAD cannot report, and B comes back by itself; what BAD
   queued is sent by B (still no gap), and the collector shows the failed upgrade with its reason.
3. A release whose file was changed where the collector keeps it (its chunks in the database, with the
   release's digest and the chunks' own digests changed to match, so the collector's checks pass) is refused
   by the agent (the signed manifest's digest), and B runs on.

POINTWATCH_AGENT_TEST_SPEEDUP shortens the agent's intervals and the trial's deadline.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from agent import __version__
from agent.versions import parse_version
from collector.store import releasefiles
from tests.livecollector import start_collector

# Three PyInstaller builds (cached under build/linux/ once made) and a trial that must time out.
pytestmark = pytest.mark.timeout(1200)

POINT = "620102001001"
COUNTY = "甘肃省/兰州市/城关区"
SPEEDUP = "20"
PLATFORM = "linux-" + os.uname().machine
VB = __version__ + ".1"
VBAD = __version__ + ".2"
VTAMPERED = __version__ + ".3"
BROKEN_SENDER = {"agent/transport.py": ('f"{base_url}/api/v1/reports"', '"http://127.0.0.1:9/api/v1/reports"')}


@pytest.fixture(scope="module")
def releases():
    from tests.linux import build

    return {__version__: build.build(), VB: build.build_variant("upgrade-b", VB),
            VBAD: build.build_variant("upgrade-bad", VBAD, BROKEN_SENDER)}


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the agent exited ({proc.returncode}) while waiting for {what}:\n"
                                 + (log.read_text(errors="replace")[-4000:] if log else ""))
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}" + (":\n" + log.read_text(errors="replace")[-4000:] if log else ""))


class World:
    def __init__(self, work: Path, collector, viewer: str, admin: str):
        self.work, self.c, self.viewer, self.admin = work, collector, viewer, admin

    def get(self, path: str, **params) -> dict:
        r = httpx.get(self.c.base + path, params=params, headers={"Authorization": f"Bearer {self.viewer}"}, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def running(self) -> str | None:
        return self.get(f"/api/v1/points/{POINT}").get("agent_version")

    def reports(self) -> list[dict]:
        """Every stored report of the point, read from the collector's own SQLite file (seq, agent_version)."""
        with closing(sqlite3.connect(f"file:{self.c.data_dir / 'pointwatch.db'}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT seq, agent_version FROM reports WHERE point_code = ?", (POINT,)).fetchall()
        return [{"seq": seq, "agent_version": version} for seq, version in rows]

    def upgrade_results(self) -> list[dict]:
        return self.get(f"/api/v1/points/{POINT}/results", check="agent.upgrade", limit=50000)["results"]

    def set_policy(self, version: str, port: int) -> None:
        doc = {"intervals": {"network": "10s", "devices": "10s", "compliance": "10s", "identity": "10s"},
               "core_network": {"timeout": "300ms", "tcp": [{"target": f"127.0.0.1:{port}", "name": "省医保信息平台"}]},
               "usage": {"forbidden_software": "none", "allowed_ports": []},
               "agent": {"version": version, "window": "00:00-24:00", "max_kbps": 100000}}
        r = httpx.put(f"{self.c.base}/api/v1/policies/regions/{COUNTY}", json=doc,
                      headers={"Authorization": f"Bearer {self.admin}"}, timeout=30)
        assert r.status_code == 200, r.text

    def release(self, binary: Path, version: str, key: Path) -> Path:
        """Copied under a release name, signed offline with the release key, then added to the collector."""
        staged = self.work / f"pointwatch-agent-{version}"
        staged.write_bytes(binary.read_bytes())
        self.c.cli("agent-release", "sign", str(staged), "--version", version, "--platform", PLATFORM, "--key", str(key))
        self.c.cli("--config", str(self.work / "collector.yaml"), "agent-release", "add", str(staged), "--version",
                   version, "--platform", PLATFORM)
        return staged


def missing_seqs(reports: list[dict]) -> list[int]:
    seqs = sorted(r["seq"] for r in reports)
    assert seqs and seqs[0] == 1, "the first report is missing"
    assert len(seqs) == len(set(seqs)), "a report stored twice"
    return sorted(set(range(1, seqs[-1] + 1)) - set(seqs))


def no_report_lost(w: World, agent, log: Path) -> None:
    """The backlog a hand-over left drains (the sender sends it in batches): then no seq is missing."""
    try:
        wait_for(lambda: not missing_seqs(w.reports()), 120, "the backlog to arrive", agent, log)
    except AssertionError:
        raise AssertionError(f"reports lost: seq {missing_seqs(w.reports())[:20]}") from None


def test_an_agent_upgrades_itself_rolls_back_a_broken_release_and_refuses_a_tampered_one(releases, tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]

    key = tmp_path / "offline" / "release-key.pem"
    key.parent.mkdir()
    keygen = subprocess.run([sys.executable, "-m", "collector.cli", "agent-release", "keygen", "--out", str(key)],
                            capture_output=True, text=True, timeout=60, check=True).stdout
    public = json.loads(keygen.strip().splitlines()[-1])["public_key"]  # the key object, the last line
    config = tmp_path / "collector.yaml"
    config.write_text(f"agent_releases:\n  public_keys: [\"{public}\"]\n  pause_failed_share: 1.0\n", encoding="utf-8")
    c = start_collector(tmp_path, extra_args=("--config", str(config)))
    agent = None
    try:
        c.cli("points", "add", "--code", POINT, "--name", "城关区甲村", "--region", COUNTY + "/某镇/甲村")
        w = World(tmp_path, c, c.cli("tokens", "create", "--role", "viewer", "--region", COUNTY, "--person", "查看"),
                  c.cli("tokens", "create", "--role", "admin", "--region", COUNTY, "--person", "管理"))
        w.set_policy(__version__, port)

        # The PC: A installed as the base binary, enrolled with a one-time code.
        base = tmp_path / "opt" / "pointwatch-agent"
        base.parent.mkdir()
        base.write_bytes(releases[__version__].read_bytes())
        base.chmod(0o755)
        cfg = tmp_path / "agent.yaml"
        cfg.write_text(f'point: {{code: "{POINT}", name: 城关区甲村}}\n'
                       f'collector: {{url: "{c.base}", timeout: 2s, policy_refresh: 60s}}\n'
                       f"state_dir: {tmp_path / 'state'}\n", encoding="utf-8")
        code = c.cli("enroll-code", "create", "--point", POINT)
        env = {"LANG": "C.UTF-8", "PATH": "/usr/bin:/bin", "POINTWATCH_AGENT_TEST_SPEEDUP": SPEEDUP}
        subprocess.run([str(base), "enroll", "--config", str(cfg), "--code", code], env=env, check=True,
                       capture_output=True, timeout=120)
        log = tmp_path / "agent.log"
        with open(log, "ab") as out:
            agent = subprocess.Popen([str(base), "run", "--config", str(cfg)], env=env, stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for(lambda: w.running() == __version__, 120, "A's first report", agent, log)

        # 1. the policy names B: A upgrades, B reports, in the same process, nothing lost.
        w.release(releases[VB], VB, key)
        w.set_policy(VB, port)
        wait_for(lambda: w.running() == VB, 300, f"reports from {VB}", agent, log)

        def committed():  # the collector stores the report before the agent has its acknowledgement
            state = json.loads((tmp_path / "state" / "upgrade.json").read_text())
            return (state.get("active") or {}).get("version") == VB and state

        wait_for(committed, 60, f"{VB}'s commit", agent, log)
        no_report_lost(w, agent, log)

        # 2. the policy names BAD: it cannot report, B comes back by itself and sends what BAD queued.
        w.release(releases[VBAD], VBAD, key)
        w.set_policy(VBAD, port)

        def rolled_back():
            failed = [r for r in w.upgrade_results() if r["status"] == "fail"
                      and r["details"].get("target") == VBAD and r["details"].get("reason") == "rolled_back"]
            return failed and w.running() == VB and failed

        failed = wait_for(rolled_back, 400, f"the rollback from {VBAD}", agent, log)
        assert VBAD in failed[-1]["message"]
        no_report_lost(w, agent, log)
        versions = {r["agent_version"] for r in w.reports()}
        assert {__version__, VB} <= versions, versions
        listed = json.loads(c.cli("--config", str(config), "agent-release", "list", "--json"))
        bad = next(r for r in listed["releases"] if r["version"] == VBAD)
        assert bad["failed"] >= 1, listed

        # 3. a release whose file was changed where the collector keeps it is refused by the agent; B runs on.
        staged = w.release(releases[VB], VTAMPERED, key)
        changed = bytearray(staged.read_bytes())
        sha = hashlib.sha256(changed).hexdigest()
        changed[len(changed) // 2] ^= 0x01
        tampered = hashlib.sha256(changed).hexdigest()
        idx = len(changed) // 2 // releasefiles.CHUNK
        piece = bytes(changed[idx * releasefiles.CHUNK:(idx + 1) * releasefiles.CHUNK])
        with closing(sqlite3.connect(c.data_dir / "pointwatch.db", timeout=30)) as db:
            # VB's release holds the same bytes (the chunks are shared by digest): the changed file gets its own
            db.execute("INSERT INTO agent_release_chunks (sha256, idx, data, digest) SELECT ?, idx, data, digest "
                       "FROM agent_release_chunks WHERE sha256 = ?", (tampered, sha))
            db.execute("UPDATE agent_release_chunks SET data = ?, digest = ? WHERE sha256 = ? AND idx = ?",
                       (piece, hashlib.sha256(piece).hexdigest(), tampered, idx))
            db.execute("UPDATE agent_releases SET sha256 = ? WHERE version = ?", (tampered, VTAMPERED))
            db.commit()
        w.set_policy(VTAMPERED, port)
        refused = wait_for(lambda: [r for r in w.upgrade_results() if r["status"] == "fail"
                                    and r["details"].get("target") == VTAMPERED], 300, "the tampered release refused",
                           agent, log)
        assert refused[-1]["details"]["reason"] == "digest_mismatch", refused[-1]
        assert w.running() == VB
        assert not (tmp_path / "state" / "releases" / VTAMPERED / staged.name).exists()
        assert parse_version(VB) < parse_version(VTAMPERED)
    finally:
        if agent is not None and agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(60)
            except subprocess.TimeoutExpired:
                agent.kill()
        c.stop()
        listener.close()
