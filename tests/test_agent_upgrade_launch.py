"""Every `run` start's launch decision (agent/upgrade/launch.py) as a table, upgrade.json's care, the
``--version`` start check, and the hand-over itself: real child processes exec'ing a real stand-in binary
(a script answering ``--version``), not a mock of our code."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.upgrade import Identity, upgrade_path
from agent.upgrade import state as st
from agent.upgrade.handover import start_check
from agent.upgrade.launch import (
    EXEC_ACTIVE,
    EXEC_TRIAL,
    ROLLBACK,
    RUN,
    TRIAL,
    at_start,
    boot_identity,
    decide,
    file_sha256,
)
from tests.conftest import REPO
from tests.release_collector import stand_in_binary

NOW = 1_000_000.0
A, B = "/opt/pointwatch-agent/bin/pointwatch-agent", "/var/lib/pointwatch-agent/releases/0.2.0/pointwatch-agent"
BOOT, REBOOT = "boot-1", "boot-2"


def trial(launches=0, ran_s=0, boots=0, boot_id=BOOT, **extra):
    return {"version": "0.2.0", "path": B, "sha256": "ab" * 32, "from_version": "0.1.0", "from_path": A,
            "started_at": NOW - 10, "budget_s": 600, "ran_s": ran_s, "launches": launches, "boots": boots,
            "boot_id": boot_id, **extra}


ACTIVE_B = {"version": "0.2.0", "path": B, "sha256": "cd" * 32}
BASE_A = {"version": "0.1.0", "path": A}
LEGACY = {k: v for k, v in trial().items() if k not in ("budget_s", "ran_s")}  # a trial with a wall-clock deadline


@pytest.mark.parametrize("name, state, own, path, boot, action, target, failed", [
    ("nothing recorded", {}, "0.1.0", A, BOOT, RUN, None, None),
    ("the trial's first start", {"trial": trial()}, "0.2.0", B, BOOT, TRIAL, None, None),
    ("the trial started again without commit", {"trial": trial(launches=1)}, "0.2.0", B, BOOT, ROLLBACK, A, "again"),
    ("the trial ran its watchdog time", {"trial": trial(ran_s=600)}, "0.2.0", B, BOOT, ROLLBACK, A, "watchdog time"),
    # The wall clock decides nothing: a PC off for the night, or an NTP jump, is no failure of the build.
    ("the first start a day later", {"trial": trial(started_at=NOW - 86400, ran_s=30)}, "0.2.0", B, BOOT, TRIAL,
     None, None),
    ("a legacy trial past its wall-clock deadline", {"trial": {**LEGACY, "deadline": NOW - 1}}, "0.2.0", B, BOOT,
     TRIAL, None, None),
    ("the trial again after a reboot", {"trial": trial(launches=1)}, "0.2.0", B, REBOOT, TRIAL, None, None),
    ("the trial again after its fourth boot", {"trial": trial(launches=1, boots=3)}, "0.2.0", B, REBOOT, ROLLBACK, A,
     "again"),
    ("the trial again, this boot unknown", {"trial": trial(launches=1)}, "0.2.0", B, None, ROLLBACK, A, "again"),
    ("the base starts while a trial is open", {"trial": trial(launches=1)}, "0.1.0", A, BOOT, RUN, None,
     "not committed"),
    ("the base starts after a reboot mid-trial", {"trial": trial(launches=1)}, "0.1.0", A, REBOOT, EXEC_TRIAL, B,
     None),
    ("the base after the trial's fourth boot", {"trial": trial(launches=1, boots=3)}, "0.1.0", A, REBOOT, RUN, None,
     "not committed"),
    ("the base starts, the active is another", {"active": ACTIVE_B, "base": BASE_A}, "0.1.0", A, BOOT, EXEC_ACTIVE,
     B, None),
    ("the active itself starts", {"active": ACTIVE_B}, "0.2.0", B, BOOT, RUN, None, None),
    ("abandoned trial, then the active", {"active": ACTIVE_B, "base": BASE_A,
                                          "trial": {**trial(), "version": "0.3.0"}}, "0.1.0", A, BOOT,
     EXEC_ACTIVE, B, "not committed"),
    # IT installed a newer build over the base by hand: it runs, the older active release is dropped. The same
    # base as before, newer than the active one, is a downgrade the policy asked for: the active one runs.
    ("a newer base installed by hand", {"active": ACTIVE_B, "base": BASE_A}, "0.3.0", A, BOOT, RUN, None, None),
    ("a newer base, none recorded", {"active": ACTIVE_B}, "0.3.0", A, BOOT, RUN, None, None),
    ("the same base, newer than a downgrade", {"active": ACTIVE_B, "base": {"version": "0.3.0", "path": A}}, "0.3.0",
     A, BOOT, EXEC_ACTIVE, B, None),
])
def test_the_launch_decision(name, state, own, path, boot, action, target, failed):
    state = {**st.empty(), **state}
    d = decide(state, own, path, NOW, boot, base=path == A)
    assert (d.action, d.path) == (action, target), name
    if action in (TRIAL, EXEC_TRIAL):
        before, after = state["trial"], d.state["trial"]
        assert d.state["failed"] == [] and after["boot_id"] == boot
        assert after["launches"] == (1 if action == TRIAL else 0)
        assert after["boots"] == before["boots"] + (before["launches"] >= 1)  # a boot's extra launch is counted
        assert d.sha256 == (before["sha256"] if action == EXEC_TRIAL else None)
    if failed:
        assert d.state["trial"] is None and d.state["last"]["event"] == "rolled_back"
        assert [f["reason"] for f in d.state["failed"]] == [st.ROLLED_BACK] and failed in d.state["failed"][0]["detail"]
    elif action not in (TRIAL, EXEC_TRIAL):
        moved = {"base": None, "active": None, "previous": None}  # what the start itself may change: below
        assert {**d.state, **moved} == {**state, **moved}, name
        assert d.state["base"] == ({"version": own, "path": path} if path == A else state["base"])
        newer_base = name.startswith("a newer base")
        assert d.state["active"] == (None if newer_base else state["active"]), name
        assert d.state["previous"] == ({"version": "0.2.0", "path": B} if newer_base else state["previous"])


def test_upgrade_json_is_private_round_trips_and_a_broken_one_is_named(tmp_path):
    path = upgrade_path(tmp_path / "state")
    assert st.load(path) == st.empty()
    state = st.with_failure(st.empty(), "0.2.0", "ab" * 32, st.DIGEST_MISMATCH, "x", NOW)
    st.save(path, state)
    assert st.load(path) == state and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["upgrade.json"]  # no temporary file left
    planted = path.with_name("upgrade.json.tmp")
    planted.write_text("someone else's", encoding="utf-8")
    st.save(path, state)  # a file planted under a temporary name is not written through
    assert planted.read_text(encoding="utf-8") == "someone else's" and st.load(path) == state
    planted.unlink()
    path.write_text("{half", encoding="utf-8")
    with pytest.raises(st.StateUnreadable, match="upgrade.json"):
        st.load(path)


def _binary(tmp_path, name, version, body=""):
    path = tmp_path / name
    path.write_bytes(stand_in_binary(version, body))
    path.chmod(0o755)
    return path


def test_at_start_the_active_release_is_checked_again_before_it_is_execd(tmp_path):
    sdir = tmp_path / "state"
    outside = _binary(tmp_path, "b", "0.2.0")
    (sdir / "releases" / "0.2.0").mkdir(parents=True)
    b = _binary(sdir / "releases" / "0.2.0", "b", "0.2.0")
    base = Identity("0.1.0", A, "linux-x86_64", True)
    # A program named from outside releases/ (upgrade.json written by someone at the PC) is never started.
    st.save(upgrade_path(sdir), {**st.empty(), "active": {"version": "0.2.0", "path": str(outside),
                                                          "sha256": file_sha256(outside)}})
    d = at_start(base, sdir, NOW)
    assert d.action == RUN and "releases" in d.problem["detail"]
    st.save(upgrade_path(sdir), {**st.empty(), "active": {"version": "0.2.0", "path": str(b), "sha256": file_sha256(b)}})
    assert at_start(base, sdir, NOW).action == EXEC_ACTIVE
    b.write_bytes(b.read_bytes() + b"# changed\n")
    d = at_start(base, sdir, NOW)
    assert d.action == RUN and d.problem["reason"] == st.DIGEST_MISMATCH
    # A pip install never hands over, whatever the file says.
    assert at_start(Identity("0.1.0", sys.executable, "wheel", False), sdir, NOW).action == RUN


def test_at_start_a_rollback_starts_only_the_recorded_base_or_a_release_with_its_recorded_digest(tmp_path):
    """upgrade.json's from_path is the program a rollback runs as SYSTEM/root: written by hand it could name
    any. Only the base binary the agent recorded when it started as that, or a file under releases/, runs,
    and only while it hashes to what the hand-over recorded."""
    sdir = tmp_path / "state"
    a = _binary(tmp_path, "a", "0.1.0")
    other = _binary(tmp_path, "someone-elses", "0.1.0")
    (sdir / "releases" / "0.1.5").mkdir(parents=True)
    released = _binary(sdir / "releases" / "0.1.5", "a", "0.1.5")
    on_trial = Identity("0.2.0", B, "linux-x86_64", True)

    def start(from_path, sha=None, base=str(a)):
        st.save(upgrade_path(sdir), {**st.empty(), "base": {"version": "0.1.0", "path": base},
                                     "trial": {**trial(launches=1), "from_path": str(from_path),
                                               "from_sha256": sha}})
        return at_start(on_trial, sdir, NOW, boot=BOOT)

    assert (start(a).action, start(a).path) == (ROLLBACK, str(a))
    assert start(a, file_sha256(a)).action == ROLLBACK
    assert start(released).action == ROLLBACK  # a release the agent downloaded (an upgrade from an upgrade)
    for d in (start(other), start(other, file_sha256(other)), start(a, "ef" * 32), start(a, base=str(other))):
        assert d.action == RUN and d.problem["reason"] == st.DIGEST_MISMATCH, d
        doc = st.load(upgrade_path(sdir))  # the trial's failure stays recorded: it is not tried again
        assert doc["trial"] is None and doc["failed"][0]["reason"] == st.ROLLED_BACK
    assert "recorded base binary" in start(other).problem["detail"]
    assert "sha256" in start(a, "ef" * 32).problem["detail"]


def test_at_start_the_base_after_a_reboot_execs_the_trial_again_once_checked(tmp_path):
    sdir = tmp_path / "state"
    (sdir / "releases" / "0.2.0").mkdir(parents=True)
    b = _binary(sdir / "releases" / "0.2.0", "b", "0.2.0")
    base = Identity("0.1.0", A, "linux-x86_64", True)
    st.save(upgrade_path(sdir), {**st.empty(), "trial": {**trial(launches=1, ran_s=200), "path": str(b),
                                                         "sha256": file_sha256(b)}})
    d = at_start(base, sdir, NOW, boot=REBOOT)
    assert (d.action, d.path) == (EXEC_TRIAL, str(b))
    doc = st.load(upgrade_path(sdir))
    assert doc["trial"]["launches"] == 0 and doc["trial"]["boots"] == 1 and doc["trial"]["ran_s"] == 200
    assert doc["base"] == {"version": "0.1.0", "path": A}
    # The same boot again (B died before its launch decision): the base runs, the trial failed.
    assert at_start(base, sdir, NOW, boot=REBOOT).action == RUN
    assert st.load(upgrade_path(sdir))["failed"][0]["reason"] == st.ROLLED_BACK
    # A changed trial file is not started, after a reboot either.
    st.save(upgrade_path(sdir), {**st.empty(), "trial": {**trial(launches=1), "path": str(b), "sha256": "ef" * 32}})
    d = at_start(base, sdir, NOW, boot=REBOOT)
    assert d.action == RUN and d.problem["reason"] == st.DIGEST_MISMATCH
    doc = st.load(upgrade_path(sdir))
    assert doc["trial"] is None and doc["failed"][0]["reason"] == st.DIGEST_MISMATCH


def test_the_boot_identity_is_this_boots(tmp_path):
    assert boot_identity() == Path("/proc/sys/kernel/random/boot_id").read_text().strip()


@pytest.mark.parametrize("body, version, words", [
    ("", "0.2.0", None),
    ("", "0.3.0", "expected 0.3.0"),
])
def test_the_start_check_requires_the_target_version(tmp_path, body, version, words):
    problem = start_check(str(_binary(tmp_path, "b", "0.2.0", body)), version)
    assert problem is None if words is None else words in problem


def test_the_start_check_gives_up_on_a_binary_that_hangs(tmp_path):
    hangs = tmp_path / "hangs"
    hangs.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(30)\n")
    hangs.chmod(0o755)
    assert "did not answer within 1s" in start_check(str(hangs), "0.2.0", timeout=1)


HANDOVER = """
import sys
sys.frozen = True  # what a PyInstaller build says: the hand-over resets its bootloader's environment
from agent.upgrade.handover import replace_process
replace_process({target!r})
print("still here")
"""


def test_the_hand_over_execs_the_new_binary_with_this_process_arguments_and_pid(tmp_path):
    seen = tmp_path / "seen.json"
    new = _binary(tmp_path, "new", "0.2.0", textwrap.dedent(f"""
        import json, os
        json.dump({{"argv": sys.argv[1:], "pid": os.getpid(), "reset": os.environ.get("PYINSTALLER_RESET_ENVIRONMENT"),
                   "ld": os.environ.get("LD_LIBRARY_PATH")}}, open({str(seen)!r}, "w"))
    """))
    script = tmp_path / "old.py"
    script.write_text(HANDOVER.format(target=str(new)))
    env = {**os.environ, "PYTHONPATH": str(REPO), "LD_LIBRARY_PATH": "/tmp/_MEI123", "LD_LIBRARY_PATH_ORIG": "/usr/x"}
    proc = subprocess.Popen([sys.executable, str(script), "run", "--config", "/etc/pointwatch/agent.yaml"], env=env,
                            stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "still here" not in out
    doc = json.loads(seen.read_text())
    assert doc == {"argv": ["run", "--config", "/etc/pointwatch/agent.yaml"], "pid": proc.pid, "reset": "1",
                   "ld": "/usr/x"}


ROLLBACK_AT_START = """
import sys, time
from agent.upgrade import Identity
from agent.upgrade.handover import replace_process
from agent.upgrade.launch import ROLLBACK, at_start
d = at_start(Identity("0.2.0", {b!r}, "linux-x86_64", True), {sdir!r}, time.time())
assert d.action == ROLLBACK, d
replace_process(d.path)
"""


def test_a_trial_started_a_second_time_execs_the_previous_binary(tmp_path):
    sdir = tmp_path / "state"
    marker = tmp_path / "a-ran"
    a = _binary(tmp_path, "a", "0.1.0", f"open({str(marker)!r}, 'w').write(' '.join(sys.argv[1:]))")
    b = tmp_path / "b"
    st.save(upgrade_path(sdir), {**st.empty(), "base": {"version": "0.1.0", "path": str(a)},
                                 "trial": {**trial(launches=1), "path": str(b), "from_path": str(a),
                                           "from_sha256": file_sha256(a), "boot_id": boot_identity()}})
    script = tmp_path / "b.py"
    script.write_text(ROLLBACK_AT_START.format(b=str(b), sdir=str(sdir)))
    proc = subprocess.run([sys.executable, str(script), "run"], env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert marker.read_text() == "run"
    doc = st.load(upgrade_path(sdir))
    assert doc["trial"] is None and doc["failed"][0]["reason"] == st.ROLLED_BACK


@pytest.mark.parametrize("edit", [
    {"failed": [{"version": "0.2.0", "reason": 5}]},          # a reason that is not text
    {"failed": ["0.2.0"]},                                     # an entry that is not an object
    {"active": {"version": "0.2.0", "path": ["x"]}},           # a path that is not text
    {"trial": {"version": "0.2.0", "deadline": {"at": 1}}},    # a time that is not a number
])
def test_a_hand_edited_upgrade_json_is_refused_whole_and_reports_go_on(tmp_path, edit):
    """A file of the wrong shape is refused when read (named), never a failure inside every report: the
    report's own agent.upgrade result says error and the report is written all the same."""
    from agent.scheduler import own_result
    from agent.vocabulary import AGENT_UPGRADE

    path = upgrade_path(tmp_path / "state")
    st.save(path, {**st.empty(), **edit})
    with pytest.raises(st.StateUnreadable, match="upgrade.json"):
        st.load(path)

    def broken():
        raise TypeError("unsupported operand")

    r = own_result(broken, AGENT_UPGRADE)
    assert (r.check, r.status) == (AGENT_UPGRADE, "error") and "TypeError" in r.message


def test_a_hand_edited_upgrade_json_never_stops_the_agent_from_starting(tmp_path):
    sdir = tmp_path / "state"
    base = Identity("0.1.0", A, "linux-x86_64", True)
    st.save(upgrade_path(sdir), {**st.empty(), "active": "0.2.0", "trial": None})  # not an object
    assert at_start(base, sdir, NOW).action == RUN
    upgrade_path(sdir).write_text("[]", encoding="utf-8")
    assert at_start(base, sdir, NOW).action == RUN


@pytest.mark.parametrize("name, open_trial, point_at, supervise, failed", [
    ("no trial: the plain restart again", None, None, False, None),
    ("the hand-over's own stop: the trial starts", trial(), None, True, None),
    ("the trial crashed before its launch decision", trial(service_starts=1), A, False, "before its launch decision"),
    ("the trial crashed after it", trial(launches=1, service_starts=1), A, False, "before a report"),
    ("the trial, started by a boot, crashed", trial(launches=1), A, False, "before a report"),
])
def test_the_windows_supervisor_of_a_trial(name, open_trial, point_at, supervise, failed):
    """What ``<A.exe> service-recover`` (the trial's failure action) decides: a B that crashes before its
    launch decision is rolled back by A, which points the service at itself, never at a path from the file."""
    from agent.upgrade.recover import after_failure

    state = {**st.empty(), "trial": open_trial}
    r = after_failure(state, A, NOW)
    assert (r.point_at, r.supervise) == (point_at, supervise), name
    if failed:
        assert r.state["trial"] is None and r.state["failed"][0]["reason"] == st.ROLLED_BACK
        assert failed in r.state["failed"][0]["detail"]
    elif open_trial:
        assert r.state["trial"]["service_starts"] == 1
        assert after_failure(r.state, A, NOW).point_at == A  # the trial's next failed stop rolls back
    else:
        assert r.state is state


@pytest.mark.parametrize("open_trial", [trial(), trial(service_starts=1), None])
def test_the_windows_supervisor_that_cannot_write_its_state_goes_back_to_the_known_good_exe(open_trial):
    """A full disk: the trial's start cannot be counted, and a trial that crashes would then be started by
    every failure for ever, so the supervisor points the service back at itself, with the plain restart
    actions, instead of starting the trial. A rollback or a trial's end is done the same, only not recorded."""
    from agent.upgrade.recover import after_failure, unsaved

    step = after_failure({**st.empty(), "trial": open_trial}, A, NOW)
    instead = unsaved(step, A)
    assert instead.supervise is False
    assert instead.point_at == (A if open_trial else None)
    if not step.supervise:
        assert instead is step
