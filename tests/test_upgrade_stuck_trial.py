"""A trial whose check thread is stuck for good still hands back to the previous binary: a real agent process
(`run_forever`, as `pointwatch-agent run` runs it) on trial, a host fact that never returns after its first
answer (a WMI/driver call hanging), no collector acknowledging anything; the watchdog's hand-over must exec
the previous binary anyway, and the outbox the stuck process leaves behind must be whole.

The process says it is a frozen build (``sys.frozen``, as tests/test_agent_upgrade_launch.py's hand-over test
does) so that its launch decision runs the trial; the previous binary is a real executable stand-in.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap

from agent import __version__
from agent.upgrade import state as st
from agent.upgrade import upgrade_path
from agent.upgrade.launch import boot_identity, file_sha256
from tests.conftest import REPO
from tests.release_collector import stand_in_binary

TRIAL_PROCESS = """
import sys, threading
sys.frozen = True
import agent.platform
from agent import config

real = agent.platform.current()
calls = []


class Stuck(type(real)):
    def fingerprint(self):
        calls.append(1)
        if len(calls) > 1:  # the first report is made; then the call never returns
            threading.Event().wait()
        return real.fingerprint()


agent.platform.current = Stuck
from agent.service import run_forever

sys.exit(run_forever(config.load(sys.argv[2])))
"""


def test_a_stuck_check_does_not_keep_the_watchdog_from_rolling_back(tmp_path):
    sdir = tmp_path / "state"
    marker = tmp_path / "previous-ran.json"
    previous = tmp_path / "opt" / "pointwatch-agent"
    previous.parent.mkdir()
    previous.write_bytes(stand_in_binary("0.1.0", textwrap.dedent(f"""
        import json
        json.dump(sys.argv[1:], open({str(marker)!r}, "w"))
    """)))
    previous.chmod(0o755)
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"""
point: {{code: "620102001001", name: 测试服务点}}
collector: {{url: "http://127.0.0.1:9", timeout: 1s}}
state_dir: {sdir}
intervals: {{network: 5s, devices: 5s, compliance: 5s, identity: 5s}}
""", encoding="utf-8")
    script = tmp_path / "trial.py"
    script.write_text(TRIAL_PROCESS, encoding="utf-8")
    # The trial of this tree's version, handed over to by `previous` (the recorded base binary), 3 s of watchdog.
    st.save(upgrade_path(sdir), {**st.empty(), "base": {"version": "0.1.0", "path": str(previous)},
                                 "trial": {"version": __version__, "path": sys.executable, "sha256": "ab" * 32,
                                           "from_version": "0.1.0", "from_path": str(previous),
                                           "from_sha256": file_sha256(previous), "started_at": 0, "budget_s": 3,
                                           "ran_s": 0, "launches": 0, "boots": 0, "boot_id": boot_identity()}})
    env = {**os.environ, "PYTHONPATH": str(REPO), "POINTWATCH_AGENT_TEST_SPEEDUP": "10"}
    proc = subprocess.Popen([sys.executable, str(script), "run", str(cfg)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError("the trial never handed back to the previous binary:\n" + out[-3000:]) from None
    assert proc.returncode == 0, out[-3000:]
    assert json.loads(marker.read_text()) == ["run", str(cfg)], out[-3000:]  # exec'd with the same arguments
    assert "agent_stop_checks_unfinished" in out
    doc = st.load(upgrade_path(sdir))
    assert doc["trial"] is None and doc["failed"][0]["reason"] == st.ROLLED_BACK
    # The outbox the stuck process left: whole, with the report made before the check got stuck.
    db = sqlite3.connect(sdir / "outbox.sqlite3")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        versions = {json.loads(body)["agent_version"] for (body,) in db.execute("SELECT body FROM reports")}
    finally:
        db.close()
    assert versions == {__version__}
