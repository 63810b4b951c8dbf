"""No release file that someone else could have written is started (agent/statedir.py), Linux side.

The upgrade manager (before the ``--version`` start check, which already runs the file) and the launch decision
(before exec'ing the active release or rolling back) ask :func:`agent.statedir.unsafe_to_start`; a refusal is a
failure with reason ``unsafe_file`` and the running version keeps running. Real files, real modes and owners
(the tests run as root, so a file can be given to another uid); the release comes from the real release
collector of tests/release_collector.py. The Windows side (DACLs under Wine) is tests/test_windows_statedir.py.
"""

from __future__ import annotations

import json
import os

import pytest

from agent import statedir
from agent.upgrade import Identity, release_dir, upgrade_path
from agent.upgrade import state as st
from agent.upgrade.launch import EXEC_ACTIVE, ROLLBACK, RUN, at_start, file_sha256
from tests.release_collector import ReleaseCollector, stand_in_binary
from tests.test_agent_upgrade import SECTION, setup

NOW = 1_000_000.0
BASE = Identity("0.1.0", "/opt/pointwatch-agent/bin/pointwatch-agent", "linux-x86_64", True)


@pytest.fixture
def releases():
    server = ReleaseCollector().start()
    yield server
    server.stop()


def _active(tmp_path, mode=0o755):
    sdir = tmp_path / "state"
    rel = release_dir(sdir, "0.2.0")
    rel.mkdir(parents=True, mode=0o700)
    sdir.chmod(0o700)
    b = rel / "pointwatch-agent"
    b.write_bytes(stand_in_binary("0.2.0"))
    b.chmod(mode)
    st.save(upgrade_path(sdir), {**st.empty(), "active": {"version": "0.2.0", "path": str(b),
                                                          "sha256": file_sha256(b)}})
    return sdir, b


def test_a_clean_active_release_is_execd(tmp_path):
    sdir, b = _active(tmp_path)
    assert statedir.unsafe_to_start(b, sdir) is None
    d = at_start(BASE, sdir, NOW)
    assert (d.action, d.path) == (EXEC_ACTIVE, str(b))


@pytest.mark.parametrize("what, change, words", [
    ("a group-writable release file", lambda s, b: b.chmod(0o775), "writable by its group or others (mode 0775)"),
    ("an other-writable release file", lambda s, b: b.chmod(0o757), "mode 0757"),
    ("a release file owned by another uid", lambda s, b: os.chown(b, 12345, 0), "owned by uid 12345"),
    ("a group-writable version folder", lambda s, b: b.parent.chmod(0o770), "0.2.0 is writable"),
    ("an other-writable releases folder", lambda s, b: b.parent.parent.chmod(0o703), "releases is writable"),
    ("a state folder others may write", lambda s, b: s.chmod(0o1777), "state is writable"),
    ("a releases folder owned by another uid", lambda s, b: os.chown(b.parent.parent, 12345, 0), "uid 12345"),
])
def test_the_active_release_is_not_execd_when_someone_else_could_have_written_it(tmp_path, what, change, words):
    if what.count("uid") and os.geteuid() != 0:
        pytest.skip("giving a file to another uid needs root")
    sdir, b = _active(tmp_path)
    change(sdir, b)
    problem = statedir.unsafe_to_start(b, sdir)
    assert problem and words in problem, what
    d = at_start(BASE, sdir, NOW)
    assert d.action == RUN and d.problem["reason"] == st.UNSAFE_FILE and words in d.problem["detail"], what
    assert d.problem["version"] == "0.2.0"


def test_a_symlink_out_of_releases_is_judged_by_what_it_points_at(tmp_path):
    sdir, b = _active(tmp_path)
    elsewhere = tmp_path / "drop"
    elsewhere.mkdir(mode=0o777)
    elsewhere.chmod(0o777)
    planted = elsewhere / "agent"
    planted.write_bytes(b.read_bytes())
    b.unlink()
    b.symlink_to(planted)
    assert "drop is writable" in statedir.unsafe_to_start(b, sdir)


def test_a_rollback_to_a_binary_in_a_folder_others_may_write_is_refused(tmp_path):
    sdir = tmp_path / "state"
    sdir.mkdir(mode=0o700)
    base_dir = tmp_path / "opt"
    base_dir.mkdir()
    base = base_dir / "pointwatch-agent"
    base.write_bytes(stand_in_binary("0.1.0"))
    base.chmod(0o755)
    trial = {"version": "0.2.0", "path": str(sdir / "releases/0.2.0/pointwatch-agent"), "sha256": "ab" * 32,
             "from_version": "0.1.0", "from_path": str(base), "started_at": NOW - 10, "deadline": NOW + 600,
             "launches": 1}
    recorded = {**st.empty(), "trial": trial, "base": {"version": "0.1.0", "path": str(base)}}
    st.save(upgrade_path(sdir), recorded)
    me = Identity("0.2.0", trial["path"], "linux-x86_64", True)
    assert at_start(me, sdir, NOW).action == ROLLBACK
    st.save(upgrade_path(sdir), recorded)
    base_dir.chmod(0o777)
    d = at_start(me, sdir, NOW)
    assert d.action == RUN and d.problem["reason"] == st.UNSAFE_FILE and d.problem["version"] == "0.1.0"
    assert "opt is writable" in d.problem["detail"]


def test_the_manager_does_not_even_start_check_a_release_in_a_folder_others_may_write(tmp_path, releases):
    marker = tmp_path / "it-ran"
    data = stand_in_binary("0.2.0").replace(b"import sys\n", f"import sys, pathlib\npathlib.Path({str(marker)!r})"
                                            f".write_text('ran')\n".encode(), 1)
    releases.add("0.2.0", data)
    manager, state, handed = setup(tmp_path, releases, SECTION)
    (state.dir / "releases").mkdir(mode=0o700)
    (state.dir / "releases").chmod(0o777)  # someone at the PC could swap the file between download and start
    manager.step()
    assert handed == [] and not marker.exists()
    status, message, details = manager.describe()
    assert (status, details["reason"], details["state"]) == ("fail", st.UNSAFE_FILE, "failed")
    assert st.REASON_CN[st.UNSAFE_FILE] in message and "releases is writable" in details["detail"]
    failed = json.loads(upgrade_path(state.dir).read_text())["failed"]
    assert [f["reason"] for f in failed] == [st.UNSAFE_FILE]
    # With the folder the agent's alone again, another build is started (checked, then handed over).
    (state.dir / "releases").chmod(0o700)
    releases.add("0.2.0", stand_in_binary("0.2.0", "pass  # rebuilt"))
    manager.step()
    assert handed == [str(release_dir(state.dir, "0.2.0") / "pointwatch-agent")]


def test_a_state_dir_that_could_not_be_protected_starts_nothing_and_the_report_says_so(tmp_path, releases,
                                                                                      monkeypatch):
    """The fail-closed path itself (on Windows: SetFileSecurity refused, e.g. a console run without
    elevation). Linux has nothing to set, so what protect() records is put in place here; the refusal and
    the report that follow are the real code's."""
    sdir, b = _active(tmp_path)
    monkeypatch.setitem(statedir._protected, os.path.realpath(sdir), "SetFileSecurity failed: access denied")
    d = at_start(BASE, sdir, NOW)
    assert d.action == RUN and "not protected" in d.problem["detail"]
    manager, state, _handed = setup(tmp_path, releases, SECTION)
    state.acl_problem = "SetFileSecurity failed: access denied"
    status, message, details = manager.describe()
    assert (status, details["state"]) == ("error", "state_dir_unprotected")
    assert "不会运行任何下载的新版本" in message and "access denied" in message


def test_protect_on_linux_leaves_the_modes_the_agent_gave(tmp_path):
    sdir = tmp_path / "state"
    sdir.mkdir(mode=0o700)
    assert statedir.protect(sdir) is None and (sdir.stat().st_mode & 0o777) == 0o700


def test_an_upgrade_state_and_release_someone_else_planted_are_removed_before_the_directory_is_protected(
        tmp_path):
    # On Windows protect_tree gives every object the state directory's DACL and Administrators as owner: a
    # planted upgrade.json and the program it names would afterwards pass every check and be exec'd as SYSTEM.
    # So they go before the ACL is fixed; the rest of the directory stays. (Under Wine, with DACLs:
    # tests/test_windows_statedir.py.) Here: created by another local user.
    sdir, b = _active(tmp_path)
    outbox = sdir / "outbox.sqlite3"
    outbox.write_bytes(b"kept")
    for path in (upgrade_path(sdir), b):
        os.chown(path, 12345, 12345)
    statedir._protected.clear()
    assert statedir.protect(sdir) is None
    assert not upgrade_path(sdir).exists() and not (sdir / "releases").exists()
    assert outbox.read_bytes() == b"kept"
    assert at_start(BASE, sdir, NOW).action == RUN


def test_the_agents_own_upgrade_state_and_releases_are_kept_by_protect(tmp_path):
    sdir, b = _active(tmp_path)
    part = b.parent / "pointwatch-agent-0.3.0.part"
    part.write_bytes(b"half")
    part.chmod(0o664)  # what the agent writes under a umask of 002: still its own
    statedir._protected.clear()
    assert statedir.protect(sdir) is None
    assert upgrade_path(sdir).exists() and b.exists()
    assert at_start(BASE, sdir, NOW).action == EXEC_ACTIVE


def test_a_planted_release_tree_with_a_link_in_it_is_not_walked_into(tmp_path):
    sdir, b = _active(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious").write_bytes(b"x")
    (b.parent / "link").symlink_to(elsewhere)
    os.chown(b, 12345, 12345)
    statedir._protected.clear()
    statedir.protect(sdir)
    assert (elsewhere / "precious").exists() and b.exists()
    assert at_start(BASE, sdir, NOW).action == RUN  # still refused at start: owned by another uid


def test_a_state_dir_inside_a_folder_others_may_write_starts_nothing(tmp_path):
    # Whoever may write the folder above the state directory renames the state directory away and puts one
    # of theirs in its place between the check and the exec (a hand-over waits for the checks first).
    shared = tmp_path / "shared"
    shared.mkdir()
    sdir, b = _active(shared)
    shared.chmod(0o777)
    problem = statedir.unsafe_to_start(b, sdir)
    assert problem and "shared is writable by its group or others" in problem and "swap" in problem
    d = at_start(BASE, sdir, NOW)
    assert d.action == RUN and d.problem["reason"] == st.UNSAFE_FILE
    shared.chmod(0o1777)  # sticky and root's (as /tmp): no one renames what is not theirs
    assert statedir.unsafe_to_start(b, sdir) is None
    os.chown(shared, 12345, 0)  # sticky, but its owner may rename anything in it
    assert "owned by uid 12345" in statedir.unsafe_to_start(b, sdir)
