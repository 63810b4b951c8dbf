"""Self-upgrade of the Windows exe (issue 23) under Wine, with a real collector process.

Three releases of dist/pointwatch-agent.exe are built under Wine (tests/windows/exe.py): A, the version of
this tree; B, the same sources with a higher ``agent.__version__``; BAD, higher still, whose reports go to a
closed loopback port (a planted bug, built into a real exe). The release key is made and used offline
with the collector's own CLI; the collector holds only its public key; A pins it at enrolment. A runs, reports,
then the county policy names B: A fetches B's manifest, verifies it, downloads B, checks that ``B --version``
prints B, records the trial and hands over; B reports (the point's ``agent_version`` at the collector), its
first acknowledged report commits the trial, and no report is lost on the way (the collector's reports table
has no seq gap: what A queued before the hand-over is sent by B from the same outbox on C:).

Both Windows hand-overs are run:

- the service: A runs as the Windows service (``service install``, Wine's SCM starts ``"A.exe"
  service-host``); at the hand-over A sets the failure actions to run its own ``service-recover``
  (agent/upgrade/recover.py: the known-good exe supervises the trial), points the service at B
  (ChangeServiceConfig) and stops with a non-zero exit code, which those failure actions turn into a start
  of B on Windows. **Wine's service manager cannot do that last step**: its ``ChangeServiceConfig2`` accepts
  SERVICE_CONFIG_FAILURE_ACTIONS and drops it (programs/services/rpc.c: "SERVICE_CONFIG_FAILURE_ACTIONS not
  implemented"; it answers SERVICE_CONFIG_FAILURE_ACTIONS_FLAG with ERROR_INVALID_LEVEL), so it never restarts
  a service that stopped. The test therefore checks what the SCM acts on, the service STOPPED with a non-zero
  exit code and its binary path naming B, and then runs ``A.exe service-recover`` itself, as the failure
  action would; that starts the service, Wine's SCM starts B from the changed binary path and B runs as the
  service. *Not proven here*: that
  Windows' SCM applies the failure actions to this stop (that needs a real Windows). Wine's SCM also hands a
  service an environment built from the registry, not the test's, so the service runs at real speed (no
  POINTWATCH_AGENT_TEST_SPEEDUP): the policy refresh (30 s) and the upgrade check (every 60 s) take their time.
- the console (``run`` in a terminal): A starts B as a new process and exits 0; B runs on. Then the policy
  names BAD, whose reports cannot reach the collector: B hands over to it, BAD's watchdog finds no
  acknowledged report by the deadline and starts B again by itself; B sends what BAD queued (still no gap)
  and reports the failed upgrade with reason ``rolled_back``. Nothing supervises a console agent, so the
  test ends the last one by ending its processes.

The trial's supervisor (``service-recover``) is run on its own in
test_a_windows_trial_is_supervised_by_the_known_good_exe: a trial's own watchdog rolling back as the
service, and a trial whose exe dies before its launch decision rolled back by A. *Not run under Wine*: the
refusal of a tampered release (platform-independent code, proven with real Linux builds in
tests/test_upgrade_linux.py).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path, PureWindowsPath

import pytest

from agent import __version__
from tests.livecollector import start_collector
from tests.test_upgrade_linux import BROKEN_SENDER, World, missing_seqs, wait_for
from tests.test_windows_agent import POINT, win_dir, zpath

pytestmark = pytest.mark.timeout(1500)

COUNTY = "甘肃省/兰州市/城关区"
PLATFORM = "windows-amd64"
VB = __version__ + ".1"
VBAD = __version__ + ".2"  # its reports go to a closed port (a planted bug, built into a real exe)
SERVICE = "pointwatch-agent"
STOPPED, RUNNING = 1, 4


@pytest.fixture(scope="module")
def exe_b(windows):
    from tests.windows.exe import build_variant

    return build_variant("upgrade-b", VB)


@pytest.fixture(scope="module")
def exe_bad(windows):
    from tests.windows.exe import build_variant

    return build_variant("upgrade-bad", VBAD, BROKEN_SENDER)


class WinWorld(World):
    def release(self, binary: Path, version: str, key: Path) -> Path:
        """Copied under its release name, signed offline with the release key, added to the collector."""
        staged = self.work / f"pointwatch-agent-{version}.exe"
        staged.write_bytes(binary.read_bytes())
        self.c.cli("agent-release", "sign", str(staged), "--version", version, "--platform", PLATFORM, "--key", str(key))
        self.c.cli("--config", str(self.work / "collector.yaml"), "agent-release", "add", str(staged), "--version",
                   version, "--platform", PLATFORM)
        return staged


class Setup:
    """A collector trusting an offline release key, the point, and A installed and enrolled on C:."""

    def __init__(self, windows, exe: Path, tmp_path: Path, name: str, speedup: str | None):
        self.embed, self.tmp = windows["3.11"], tmp_path
        self.extra = {"POINTWATCH_AGENT_TEST_SPEEDUP": speedup} if speedup else {}
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.key = tmp_path / "offline" / "release-key.pem"
        self.key.parent.mkdir()
        keygen = subprocess.run([sys.executable, "-m", "collector.cli", "agent-release", "keygen", "--out",
                                 str(self.key)], capture_output=True, text=True, timeout=60, check=True).stdout
        public = json.loads(keygen.strip().splitlines()[-1])["public_key"]
        (tmp_path / "collector.yaml").write_text(f"agent_releases:\n  public_keys: [\"{public}\"]\n",
                                                 encoding="utf-8")
        self.c = start_collector(tmp_path, extra_args=("--config", str(tmp_path / "collector.yaml")))
        self.c.cli("points", "add", "--code", POINT, "--name", "城关区甲村", "--region", COUNTY + "/某镇/甲村")
        self.w = WinWorld(tmp_path, self.c,
                          self.c.cli("tokens", "create", "--role", "viewer", "--region", COUNTY, "--person", "查看"),
                          self.c.cli("tokens", "create", "--role", "admin", "--region", COUNTY, "--person", "管理"))
        self.w.set_policy(__version__, self.port)
        root_win, self.root = win_dir(name)
        self.state_win, self.state = root_win + "\\state", self.root / "state"
        self.base = self.root / "opt" / "pointwatch-agent.exe"  # A, installed as a PC would have it
        self.base.parent.mkdir(parents=True)
        shutil.copyfile(exe, self.base)
        cfg = tmp_path / "agent.yaml"
        cfg.write_text(f'point: {{code: "{POINT}", name: 城关区甲村}}\n'
                       f'collector: {{url: "{self.c.base}", timeout: 5s, policy_refresh: 30s}}\n'
                       f"state_dir: '{self.state_win}'\n", encoding="utf-8")
        self.cfg = zpath(cfg)
        code = self.c.cli("enroll-code", "create", "--point", POINT)
        enrolled = self.exe(self.base, "enroll", "--config", self.cfg, "--code", code)
        assert enrolled.returncode == 0, enrolled.stderr.decode("utf-8", "replace")
        assert json.loads((self.state / "release_keys.json").read_text())  # the release key, pinned

    def command(self, exe: Path, *args: str) -> list[str]:
        return [self.embed.command()[0], str(exe), *args]

    def exe(self, exe: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(exe, *args), stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, env=self.embed.env(**self.extra))

    def log(self) -> str:
        path = self.state / "logs" / "agent.log"
        return path.read_bytes().decode("utf-8", "replace")[-6000:] if path.exists() else "(no agent log)"

    def upgrade_to_b(self, exe_b: Path) -> None:
        self.w.release(exe_b, VB, self.key)
        self.w.set_policy(VB, self.port)

    def b_committed(self) -> dict:
        state = json.loads((self.state / "upgrade.json").read_text())
        assert state["active"]["version"] == VB and state["trial"] is None, state
        assert state["previous"]["version"] == __version__, state
        assert PureWindowsPath(state["active"]["path"]).name == f"pointwatch-agent-{VB}.exe", state
        return state

    def no_report_lost(self) -> None:
        try:
            wait_for(lambda: not missing_seqs(self.w.reports()), 180, "the backlog to arrive")
        except AssertionError:
            raise AssertionError(f"reports lost: seq {missing_seqs(self.w.reports())[:20]}\n{self.log()}") from None
        versions = {r["agent_version"] for r in self.w.reports()}
        assert {__version__, VB} <= versions, versions

    def close(self) -> None:
        self.c.stop()
        self.listener.close()


def wine_processes(marker: str) -> list:
    """The Linux processes Wine runs for Windows programs of our prefix whose command line holds ``marker``."""
    import psutil

    from tests.windows.prepare import PREFIX

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if marker.lower() in " ".join(proc.info["cmdline"] or []).lower() \
                    and proc.environ().get("WINEPREFIX") == str(PREFIX):
                found.append(proc)
        except (psutil.Error, OSError):
            pass
    return found


def end_processes(marker: str) -> None:
    import psutil

    for proc in wine_processes(marker):
        try:
            proc.kill()
            proc.wait(20)
        except (psutil.Error, OSError):
            pass


# -- the service ----------------------------------------------------------------------------------------------

def _scm(setup: Setup, what: str) -> str:
    """One call into the service manager through pywin32 in the embeddable CPython (its output, stripped)."""
    code = ("import win32service as s, win32serviceutil as u\n"
            f"name = {SERVICE!r}\n"
            "try:\n"
            f"    {what}\n"
            "except Exception as exc:\n"
            "    print('error', exc)\n")
    embed = setup.embed
    proc = subprocess.run([embed.command()[0], str(embed.python), "-c", code], stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=120, env=embed.env())
    return proc.stdout.decode("utf-8", "replace").strip()


def service_status(setup: Setup) -> tuple[int, int]:
    """(state, win32 exit code) of the service, or (0, 0) when it is not there."""
    out = _scm(setup, "st = u.QueryServiceStatus(name); print(st[1], st[3])")
    parts = out.split()
    return (int(parts[0]), int(parts[1])) if len(parts) == 2 and parts[0].isdigit() else (0, 0)


def service_binary(setup: Setup) -> str:
    code = ("h = s.OpenSCManager(None, None, s.SC_MANAGER_ALL_ACCESS); "
            "v = s.OpenService(h, name, s.SERVICE_QUERY_CONFIG); print(s.QueryServiceConfig(v)[3])")
    return _scm(setup, code)


def test_the_service_points_itself_at_b_and_b_runs_as_the_service(windows, exe, exe_b, tmp_path):
    setup = Setup(windows, exe, tmp_path, "upgrade-service", speedup=None)
    w = setup.w
    try:
        installed = setup.exe(setup.base, "service", "install", "--config", setup.cfg)
        assert installed.returncode == 0, installed.stdout.decode("utf-8", "replace") + installed.stderr.decode()
        assert str(setup.base.name) in service_binary(setup)
        if service_status(setup)[0] != RUNNING:  # Windows proper installs it stopped; Wine starts it at once
            assert setup.exe(setup.base, "service", "start").returncode == 0
        wait_for(lambda: w.running() == __version__, 240, "A's first report from the service")

        setup.upgrade_to_b(exe_b)
        # A: policy refresh, download, `B --version`, the trial recorded, then the service pointed at B and
        # stopped with an error, which is what makes Windows' SCM apply the failure actions.
        b_name = f"pointwatch-agent-{VB}.exe"
        wait_for(lambda: b_name in service_binary(setup), 400, "the service's binary path to name B")
        state, exit_code = wait_for(lambda: (st := service_status(setup))[0] == STOPPED and st, 120,
                                    "A's service to stop")
        assert exit_code != 0, f"A stopped the service with exit code 0: no failure action would start B\n{setup.log()}"
        trial = json.loads((setup.state / "upgrade.json").read_text())["trial"]
        assert trial["version"] == VB and trial["from_version"] == __version__, trial
        assert w.running() == __version__

        # Wine's SCM has no failure actions (the docstring): the test runs what A set them to during the
        # trial, A's own `service-recover`, which starts the service (now B).
        recovered = setup.exe(setup.base, "service-recover", timeout=240)
        assert recovered.returncode == 0, recovered.stderr.decode("utf-8", "replace") + setup.log()
        assert json.loads((setup.state / "upgrade.json").read_text())["trial"]["service_starts"] == 1
        wait_for(lambda: w.running() == VB, 240, f"reports from {VB}, the service's new binary")
        assert service_status(setup)[0] == RUNNING
        assert wine_processes(b_name), "no process runs B"
        setup.b_committed()
        setup.no_report_lost()
    finally:
        _scm(setup, "u.StopService(name)")
        _scm(setup, "s.DeleteService(s.OpenService(s.OpenSCManager(None, None, s.SC_MANAGER_ALL_ACCESS), name, "
                    "s.SERVICE_ALL_ACCESS)); print('removed')")
        end_processes("service-host")  # Wine leaves a stopping service STOP_PENDING (test_windows_agent.py)
        setup.close()
    wait_for(lambda: service_status(setup)[0] == 0, 60, "the removed service to disappear")


# -- the console ----------------------------------------------------------------------------------------------

def test_the_console_agent_starts_b_and_exits_and_a_broken_successor_rolls_back(windows, exe, exe_b, exe_bad,
                                                                                 tmp_path):
    setup = Setup(windows, exe, tmp_path, "upgrade-console", speedup="5")
    w = setup.w
    lines: list[str] = []
    # Pipes: Wine cannot hand a regular Linux file to a Windows program as its std handle.
    agent = subprocess.Popen(setup.command(setup.base, "run", "--config", setup.cfg), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=setup.embed.env(**setup.extra))
    threading.Thread(target=lambda: lines.extend(r.decode("utf-8", "replace") for r in agent.stdout),
                     daemon=True).start()
    b_name = f"pointwatch-agent-{VB}.exe"
    try:
        wait_for(lambda: w.running() == __version__, 240, "A's first report")
        assert agent.poll() is None, "".join(lines)[-4000:]

        setup.upgrade_to_b(exe_b)
        wait_for(lambda: w.running() == VB, 400, f"reports from {VB}")
        # A handed over by starting B and ending itself: its process is gone, with exit code 0; B's runs.
        assert agent.wait(60) == 0, "".join(lines)[-4000:]
        assert wine_processes(b_name), "no process runs B"
        setup.b_committed()
        setup.no_report_lost()

        # BAD cannot report: its watchdog gives up at the deadline and B comes back by itself.
        w.release(exe_bad, VBAD, setup.key)
        w.set_policy(VBAD, setup.port)

        def rolled_back():
            failed = [r for r in w.upgrade_results() if r["status"] == "fail"
                      and r["details"].get("target") == VBAD and r["details"].get("reason") == "rolled_back"]
            return failed and w.running() == VB and failed

        failed = wait_for(rolled_back, 600, f"the rollback from {VBAD}")
        assert VBAD in failed[-1]["message"], failed[-1]
        setup.no_report_lost()
        assert VBAD in {r["agent_version"] for r in w.reports()}  # BAD's own reports, sent by B
        state = setup.b_committed()
        assert any(f["version"] == VBAD and f["reason"] == "rolled_back" for f in state["failed"]), state
        wait_for(lambda: not wine_processes(f"pointwatch-agent-{VBAD}.exe"), 60, "BAD's processes to end")
        assert wine_processes(b_name), "no process runs B"
    finally:
        if agent.poll() is None:
            agent.kill()
        end_processes(f"pointwatch-agent-{VBAD}.exe")
        end_processes(b_name)
        end_processes(setup.base.name)
        setup.close()


# -- the trial's supervisor -----------------------------------------------------------------------------------

def _hand_over_to(setup: Setup, a_win: str, trial: dict, budget_s: float) -> None:
    """What A's hand-over to a trial does (agent/winservice.py ``_restart_into`` with a supervisor): the trial
    recorded, the failure actions set to A's service-recover, the service pointed at the trial's exe."""
    doc = json.loads((setup.state / "upgrade.json").read_text()) if (setup.state / "upgrade.json").exists() else {
        "format": 1, "active": None, "previous": None, "failed": [], "corrupt": None, "last": None}
    doc["base"] = {"version": __version__, "path": a_win}  # A recorded itself when it last started as the base
    doc["trial"] = {"from_version": __version__, "from_path": a_win, "started_at": 0, "budget_s": budget_s,
                    "ran_s": 0, "launches": 0, "boots": 0, "boot_id": None, **trial}
    (setup.state / "upgrade.json").write_text(json.dumps(doc), encoding="utf-8")
    out = _scm(setup, "from agent.upgrade.windows import point_service_at, supervise_trial\n"
                      f"    supervise_trial({a_win!r}, name); point_service_at({trial['path']!r}, name)\n"
                      "    v = s.OpenService(s.OpenSCManager(None, None, s.SC_MANAGER_ALL_ACCESS), name, "
                      "s.SERVICE_QUERY_CONFIG)\n"
                      "    print('configured')\n"
                      "    print(s.QueryServiceConfig2(v, s.SERVICE_CONFIG_FAILURE_ACTIONS))")
    assert out.splitlines()[0] == "configured", out
    # Wine accepts the failure actions and drops them: reading them back is refused. A Wine that implements
    # them fails this line, and the test then has to check what it reads.
    assert out.splitlines()[1].startswith("error (124, 'QueryServiceConfig2'"), out
    assert PureWindowsPath(trial["path"]).name in service_binary(setup)


def test_a_windows_trial_is_supervised_by_the_known_good_exe(windows, exe, tmp_path):
    """During a trial the service's failure actions run ``"<A.exe>" service-recover`` (agent/upgrade/recover.py)
    instead of restarting B: a B that dies before its launch decision would otherwise be restarted for ever.

    Run under Wine, the subcommand run by the test where the failure actions would run it:
    1. after A's hand-over stop it starts the service, now B; B's launch decision runs it as the trial; B's
       watchdog (no acknowledgement: the collector URL is a closed port, so it counts as an outage,
       collector_unreachable) rolls back as the service does: the service pointed at A, stopped as failed;
    2. A hands over to a trial whose exe is damaged (truncated: it never reaches the launch decision): the
       supervisor's start of it fails, so it rolls back at once: the failure recorded, the service pointed at
       A, the restart actions back, the service started. (The supervisor with no trial open, the restart
       actions back and the service started as it is, is the same code without the rollback; its decision
       is tested in tests/test_agent_upgrade_launch.py. Wine's SCM does not bring a service whose process
       was ended back to STOPPED, so one test cannot stop A again to run it.)
    B is a copy of A under releases/ (the same version; what is checked is the supervision, not new code).

    *Not proven here*: Wine's SCM accepts SERVICE_CONFIG_FAILURE_ACTIONS and drops it, and answers its
    QueryServiceConfig2 with ERROR_INVALID_LEVEL (asserted, so that a Wine that implements it shows up). That
    Windows stores the actions as written and its SCM runs the command, as the service's account
    (LocalSystem, per the SERVICE_FAILURE_ACTIONS documentation), when the service stops as failed or its
    process dies, needs a real Windows (docs/en/operations.md, "Tested where")."""
    import hashlib

    setup = Setup(windows, exe, tmp_path, "upgrade-recover", speedup=None)
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(cfg.read_text(encoding="utf-8").replace(setup.c.base, "http://127.0.0.1:9"), encoding="utf-8")
    root_win = setup.state_win.rsplit("\\", 1)[0]
    a_win = root_win + "\\opt\\pointwatch-agent.exe"
    releases = setup.state / "releases" / __version__
    releases.mkdir(parents=True)
    good, broken = releases / "pointwatch-agent-trial.exe", releases / "pointwatch-agent-broken.exe"
    shutil.copyfile(setup.base, good)
    broken.write_bytes(setup.base.read_bytes()[:400_000])  # the bootloader without its archive
    win = {p: f"{setup.state_win}\\releases\\{__version__}\\{p.name}" for p in (good, broken)}
    upgrade_json = setup.state / "upgrade.json"

    def a_runs():
        return [p for p in wine_processes("pointwatch-agent.exe") if "service-host" in " ".join(p.cmdline())]

    def recover():
        done = setup.exe(setup.base, "service-recover", timeout=240)
        assert done.returncode == 0, done.stderr.decode("utf-8", "replace") + setup.log()
        return json.loads(upgrade_json.read_text())

    try:
        installed = setup.exe(setup.base, "service", "install", "--config", setup.cfg, "--startup", "manual")
        assert installed.returncode == 0, installed.stdout.decode("utf-8", "replace") + installed.stderr.decode()
        end_processes("service-host")  # should Wine have started it anyway
        _hand_over_to(setup, a_win, {"version": __version__, "path": win[good],
                                     "sha256": hashlib.sha256(good.read_bytes()).hexdigest()}, budget_s=20)

        # 1. The failure action after the hand-over's stop: the trial started; its own watchdog rolls back.
        assert recover()["trial"]["service_starts"] == 1
        wait_for(lambda: wine_processes(good.name), 120, "the service to run the trial's exe")
        state, code = wait_for(lambda: (st := service_status(setup))[0] == STOPPED and st, 240,
                               "the trial's watchdog to stop the service" + setup.log())
        assert code != 0, "the rollback stopped the service with exit code 0: no failure action would run"
        doc = json.loads(upgrade_json.read_text())
        # Nothing at the collector's URL answered (a closed port): an outage, not the build's fault, so the
        # rollback is counted in ``unreachable`` (tried again later) rather than as a failed build.
        assert doc["trial"] is None and doc["last"]["event"] == "rolled_back", doc
        assert doc["unreachable"]["count"] == 1 and doc["failed"] == [], doc
        binary = service_binary(setup)
        assert "pointwatch-agent.exe" in binary and good.name not in binary, binary

        # 2. A trial that dies before its launch decision: rolled back by A at once, and A started.
        _hand_over_to(setup, a_win, {"version": __version__, "path": win[broken],
                                     "sha256": hashlib.sha256(broken.read_bytes()).hexdigest()}, budget_s=600)
        doc = recover()
        assert doc["trial"] is None, doc
        assert doc["failed"][-1]["reason"] == "rolled_back" and "before its launch decision" in doc["failed"][-1][
            "detail"], doc
        binary = service_binary(setup)
        assert "pointwatch-agent.exe" in binary and broken.name not in binary, binary
        wait_for(a_runs, 120, "the service to run A after the damaged trial")
        assert "upgrade_trial_start_failed" in setup.log()
    finally:
        _scm(setup, "u.StopService(name)")
        _scm(setup, "s.DeleteService(s.OpenService(s.OpenSCManager(None, None, s.SC_MANAGER_ALL_ACCESS), name, "
                    "s.SERVICE_ALL_ACCESS)); print('removed')")
        end_processes("service-host")
        setup.close()
    wait_for(lambda: service_status(setup)[0] == 0, 60, "the removed service to disappear")
