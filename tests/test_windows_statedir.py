"""The state directory's DACL and the refusal of a release others could write, under Wine with the real
embeddable Windows CPython and pywin32 (agent/winacl.py, agent/statedir.py).

What Wine (8.0, as packaged here) does with a security descriptor, found by setting and reading back
descriptors with win32security on the prefix's C: drive: it keeps no descriptor of its own for a file (no
``user.wine.sd`` xattr is written, though the file system takes user xattrs). SetFileSecurity turns the DACL
into the Unix mode bits (the file's owner and "everyone else"); GetFileSecurity makes a DACL up from those
bits: SYSTEM full, the Wine user (S-1-5-21-0-0-0-1000, who owns every file) by the owner bits, and Everyone
(S-1-1-0) by the "other" bits. SetNamedSecurityInfo answers success and changes nothing lasting. So under Wine:

- *proven*: the agent's calls are the right ones for the real pywin32 (no error, the owner and DACL set in one
  call); after ``enroll`` the state directory, the token and a file an older version left readable name no
  one but SYSTEM and the agent's own user (before: Everyone could read them), and the Unix mode shows the same;
  a file made readable and the directory made writable for everyone after that are fixed by the next ``run``;
  the read-back parser finds a DACL that grants Everyone write, set through SetFileSecurity, and the launch
  decision then refuses to exec the active release (reason ``unsafe_file``), while the clean one is exec'd.
- *not proven here* (Wine cannot represent it): that the DACL is marked protected (SE_DACL_PROTECTED comes back
  unset whatever was set), that it names BUILTIN\\Administrators, that the owner becomes Administrators, that
  files created later inherit it (OI|CI), and a grant to BUILTIN\\Users specifically (Wine has no ACE for it to
  keep; Everyone is the group it can show). Those need a real Windows; the code that builds the descriptor is
  the same one whose calls run here. ``service install`` and the service's start call the same
  ``State.ensure_dir``/``protect`` as ``enroll`` and ``run``; they are not run here (Wine's service manager starts
  an auto-start service at once and never completes its stop, tests/test_windows_agent.py).
"""

from __future__ import annotations

import json
import os
import textwrap

import pytest

from tests.test_windows_agent import (  # noqa: F401 (loopback: the fixture)
    POINT,
    Collector,
    Running,
    check_config,
    loopback,
    out,
    run_agent,
    wait_for,
    win_dir,
    zpath,
)

pytestmark = pytest.mark.timeout(900)

SYSTEM, ADMINS = "S-1-5-18", "S-1-5-32-544"

READ_BACK = textwrap.dedent("""
    import json, sys
    import win32api, win32security as ws
    token = ws.OpenProcessToken(win32api.GetCurrentProcess(), ws.TOKEN_QUERY)
    me = ws.ConvertSidToStringSid(ws.GetTokenInformation(token, ws.TokenUser)[0])
    out = {"me": me, "paths": {}}
    for path in sys.argv[1:]:
        sd = ws.GetFileSecurity(path, ws.OWNER_SECURITY_INFORMATION | ws.DACL_SECURITY_INFORMATION)
        dacl = sd.GetSecurityDescriptorDacl()
        aces = [dacl.GetAce(i) for i in range(dacl.GetAceCount())] if dacl is not None else None
        out["paths"][path] = {
            "owner": ws.ConvertSidToStringSid(sd.GetSecurityDescriptorOwner()),
            "protected": bool(sd.GetSecurityDescriptorControl()[0] & ws.SE_DACL_PROTECTED),
            "aces": None if aces is None else [[a[0][0], a[0][1], a[1] & 0xFFFFFFFF, ws.ConvertSidToStringSid(a[-1])]
                                               for a in aces]}
    print(json.dumps(out))
""")


def windows_python(embed, tmp_path, name: str, source: str, *args: str) -> dict:
    script = tmp_path / f"{name}.py"
    script.write_text(source, encoding="utf-8")
    proc = run_agent_script(embed, script, *args)
    assert proc.returncode == 0, out(proc) + proc.stderr.decode("utf-8", "replace")
    return json.loads(out(proc).strip().splitlines()[-1])


def run_agent_script(embed, script, *args):
    import subprocess

    return subprocess.run(embed.command(zpath(script), *args), stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=180, env=embed.env())


def granted(info: dict) -> set[str]:
    """Who any ACE applying to the object grants something."""
    assert info["aces"] is not None, info  # a NULL DACL would be everyone
    return {sid for ace_type, flags, mask, sid in info["aces"] if ace_type == 0 and not flags & 0x08 and mask}


def test_enroll_leaves_the_state_dir_and_the_token_to_the_system_and_the_agent(windows, loopback, tmp_path):  # noqa: F811
    embed = windows["3.10"]
    state, state_linux = win_dir("acl-enroll")
    state_linux.mkdir()
    os.chmod(state_linux, 0o777)
    (state_linux / "left-by-an-older-version").write_text("x")
    os.chmod(state_linux / "left-by-an-older-version", 0o666)
    paths = [state, f"{state}\\left-by-an-older-version"]
    before = windows_python(embed, tmp_path, "before", READ_BACK, *paths)
    assert all("S-1-1-0" in granted(before["paths"][p]) for p in paths), before  # the test can fail

    collector = Collector(tmp_path)
    collector.cli("points", "add", "--code", POINT, "--name", "城关区某村医保服务点", "--region",
                  "甘肃省/兰州市/城关区")
    code = collector.cli("enroll-code", "create", "--point", POINT)
    collector.start()
    try:
        cfg = zpath(check_config(tmp_path, state, loopback, collector=f"http://127.0.0.1:{collector.port}"))
        enrolled = run_agent(embed, "enroll", "--config", cfg, "--code", code)
        assert enrolled.returncode == 0, out(enrolled) + enrolled.stderr.decode("utf-8")
    finally:
        collector.stop()
    paths += [f"{state}\\token", f"{state}\\agent_id", f"{state}\\policy_keys.json"]
    after = windows_python(embed, tmp_path, "after", READ_BACK, *paths)
    allowed = {SYSTEM, ADMINS, after["me"]}
    for p in paths:
        assert granted(after["paths"][p]) <= allowed, (p, after["paths"][p])
        assert after["paths"][p]["owner"] in allowed, (p, after["paths"][p])
    assert SYSTEM in granted(after["paths"][state])
    for linux in (state_linux, state_linux / "token", state_linux / "left-by-an-older-version"):
        assert os.stat(linux).st_mode & 0o007 == 0, linux  # what Wine keeps of the DACL: nothing for others

    # Loosened again after enrolment (by hand, or a file an older version writes): each start fixes it.
    os.chmod(state_linux, 0o777)
    (state_linux / "later").write_text("x")
    os.chmod(state_linux / "later", 0o666)
    agent = Running(embed, cfg)
    try:
        log = state_linux / "logs" / "agent.log"
        wait_for(lambda: log.exists() and "agent_started" in log.read_bytes().decode("utf-8"), 120,
                 "the agent to start")
    finally:
        agent.kill()
    paths = [state, f"{state}\\later", f"{state}\\token"]
    started = windows_python(embed, tmp_path, "started", READ_BACK, *paths)
    for p in paths:
        assert granted(started["paths"][p]) <= allowed, (p, started["paths"][p])


LAUNCH = textwrap.dedent("""
    import json, os, sys, time
    import ntsecuritycon as con, win32security as ws
    from agent import statedir
    from agent.upgrade import Identity, upgrade_path
    from agent.upgrade import state as st
    from agent.upgrade.launch import at_start, file_sha256
    state_dir, base, step = sys.argv[1], sys.argv[2], sys.argv[3]
    exe = os.path.join(state_dir, "releases", "0.2.0", "pointwatch-agent.exe")
    if step == "setup":
        os.makedirs(os.path.dirname(exe))
        with open(exe, "wb") as f:
            f.write(b"MZ stand-in: at_start only decides, it never runs the file")
        statedir.protect(state_dir)
        st.save(upgrade_path(state_dir), {**st.empty(), "active": {"version": "0.2.0", "path": exe,
                                                                    "sha256": file_sha256(exe)}})
    if step in ("grant_everyone_write", "planted"):  # through the Windows API, as a local administrator's
        acl = ws.ACL()                                  # mistake (or an older version's open directory) would
        for sid, mask in (("S-1-5-18", con.FILE_ALL_ACCESS), ("S-1-1-0", con.FILE_GENERIC_WRITE)):
            acl.AddAccessAllowedAce(ws.ACL_REVISION, mask, ws.ConvertStringSidToSid(sid))
        sd = ws.SECURITY_DESCRIPTOR()
        sd.SetSecurityDescriptorDacl(True, acl, False)
        for path in ([exe, str(upgrade_path(state_dir))] if step == "planted" else [exe]):
            ws.SetFileSecurity(path, ws.DACL_SECURITY_INFORMATION, sd)
    if step == "planted":  # the next start: protect() first, as run_forever and the service do
        statedir.protect(state_dir)
    d = at_start(Identity("0.1.0", base, "windows-amd64", True), state_dir, time.time())
    print(json.dumps({"action": d.action, "path": d.path, "problem": d.problem, "exe_left": os.path.exists(exe)}))
""")


def test_the_active_release_is_not_execd_once_everyone_may_write_it(windows, tmp_path):
    embed = windows["3.10"]
    state, state_linux = win_dir("acl-launch")
    base = f"{state}-base\\pointwatch-agent.exe"
    clean = windows_python(embed, tmp_path, "launch", LAUNCH, state, base, "setup")
    exe = f"{state}\\releases\\0.2.0\\pointwatch-agent.exe"
    assert (clean["action"], clean["path"]) == ("exec_active", exe), clean
    refused = windows_python(embed, tmp_path, "launch", LAUNCH, state, base, "grant_everyone_write")
    assert refused["action"] == "run" and refused["problem"]["reason"] == "unsafe_file", refused
    assert "S-1-1-0" in refused["problem"]["detail"] and refused["problem"]["version"] == "0.2.0", refused
    assert os.stat(state_linux / "releases" / "0.2.0" / "pointwatch-agent.exe").st_mode & 0o002


def test_a_release_and_upgrade_state_others_could_write_are_removed_not_adopted_by_the_next_start(windows, tmp_path):
    # protect() gives everything in the directory its DACL and Administrators as owner: done first, it would
    # make a planted upgrade.json and the exe it names look like the agent's own, and exec the exe as SYSTEM.
    embed = windows["3.10"]
    state, state_linux = win_dir("acl-planted")
    base = f"{state}-base\\pointwatch-agent.exe"
    clean = windows_python(embed, tmp_path, "launch", LAUNCH, state, base, "setup")
    assert clean["action"] == "exec_active", clean
    planted = windows_python(embed, tmp_path, "launch", LAUNCH, state, base, "planted")
    assert planted["action"] == "run" and not planted["exe_left"], planted
    assert not (state_linux / "releases").exists()
    # the launch decision then wrote a fresh upgrade.json of its own (the base it saw): nothing planted is left
    assert json.loads((state_linux / "upgrade.json").read_text(encoding="utf-8"))["active"] is None
