"""snmpsim as a test fixture: serve a folder of .snmprec recordings on a free UDP port of 127.0.0.1.

Community (v1/v2c) and v3 context = a recording's file name without `.snmprec`; the v3 user is
:data:`V3` (SHA/AES).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.checks.devices import snmp
from tests.conftest import free_port, require

V3 = {"user": "pointwatch", "auth_key": "auth-secret-1", "priv_key": "priv-secret-1"}


@dataclass
class Sim:
    port: int
    proc: subprocess.Popen

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def _readable_by_others(path: Path) -> bool:
    """Whether user 'nobody' could run this interpreter: every parent must be o+x and the file o+r."""
    path = path.resolve()
    for parent in path.parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            return False
    return bool(path.stat().st_mode & stat.S_IROTH)


def start_snmpsim(data_dir: Path, work: Path, v3: bool = True) -> Sim:
    exe = shutil.which("snmpsim-command-responder") or str(Path(sys.executable).parent / "snmpsim-command-responder")
    require(os.path.exists(exe), "snmpsim-command-responder not installed (pip install -e '.[dev]')")
    cache = work / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [exe, f"--data-dir={data_dir}", f"--cache-dir={cache}", f"--agent-udpv4-endpoint=127.0.0.1:{port}",
           "--log-level=error"]
    if v3:
        cmd += [f"--v3-user={V3['user']}", f"--v3-auth-key={V3['auth_key']}", "--v3-auth-proto=SHA",
                f"--v3-priv-key={V3['priv_key']}", "--v3-priv-proto=AES"]
    env = dict(os.environ)
    if os.geteuid() == 0:
        # snmpsim refuses to keep root; it drops to the given user, who must be able to read the Python
        # interpreter (a pyenv Python under /root is not). Where it cannot, snmpsim's own escape hatch.
        if _readable_by_others(Path(sys.executable)):
            cmd += ["--process-user=nobody", "--process-group=nogroup"]
            os.chmod(work, 0o777)
            os.chmod(cache, 0o777)
        else:
            env["SNMPSIM_ALLOW_ROOT"] = "true"
    log = open(work / "snmpsim.log", "wb")  # noqa: SIM115 (lives as long as the process)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    sim = Sim(port, proc)
    community = data_dir.glob("*.snmprec").__next__().stem
    t_end = time.monotonic() + 90  # the first start indexes every recording
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            pytest.fail(f"snmpsim exited: {(work / 'snmpsim.log').read_text(errors='replace')[-2000:]}")
        if snmp.poll(snmp.SnmpConfig("127.0.0.1", port, community=community), 0.5, 1).answered:
            return sim
    sim.stop()
    pytest.fail("snmpsim did not answer within 90 s")


