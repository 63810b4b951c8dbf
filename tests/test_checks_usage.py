"""usage.*: real forbidden-named processes, recorded volumes/sessions, and the catalogue itself."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from agent.checks.software import default_catalogue_path, load_catalogue, parse_catalogue
from agent.checks.usage import accounts, listening_ports, process_usage, removable_media
from agent.confignode import ConfigError, Node
from agent.platform import Listener, ProcessInfo, Session, StorageVolume
from agent.platform.linux import LinuxPlatform


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue(Node("default", "usage.forbidden_software", 1, "<test>"))


@pytest.fixture
def forbidden_processes(tmp_path):
    """Copies of `sleep` named like TeamViewer's Linux daemon and ToDesk, really running."""
    sleep = shutil.which("sleep")
    procs = []
    for name in ("teamviewerd", "ToDesk"):
        exe = tmp_path / name
        shutil.copy(sleep, exe)
        procs.append(subprocess.Popen([str(exe), "60"]))
    time.sleep(0.1)
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def test_catalogue_has_the_issue_entries_with_sources(catalogue):
    ids = {s.id for s in catalogue}
    assert {"teamviewer", "anydesk", "sunlogin", "todesk", "rustdesk", "vnc_server", "wechat", "qq", "thunder",
            "steam"} <= ids
    assert {s.category for s in catalogue} == {"remote_control", "chat", "p2p", "game"}
    assert all(s.source for s in catalogue)
    assert default_catalogue_path() is not None


def test_running_forbidden_processes_are_reported(catalogue, forbidden_processes):
    outcome = process_usage(LinuxPlatform().processes(), catalogue, required=[])
    assert outcome.status == "fail"
    found = {(f["software"], f["pid"]) for f in outcome.details["forbidden"]}
    assert ("teamviewer", forbidden_processes[0].pid) in found
    assert ("todesk", forbidden_processes[1].pid) in found
    assert "TeamViewer（远程控制）" in outcome.message and "ToDesk（远程控制）" in outcome.message
    assert outcome.value == 2


def test_required_process_must_run(catalogue, forbidden_processes):
    outcome = process_usage(LinuxPlatform().processes(), [], required=["ToDesk", "HipsDaemon.exe"])
    assert outcome.status == "fail"
    assert outcome.details["missing_required"] == ["HipsDaemon.exe"]
    assert "必需软件未运行：HipsDaemon.exe" in outcome.message


def test_match_by_windows_name_and_path_case_insensitively(catalogue):
    procs = [ProcessInfo(10, "sunloginclient.EXE", r"C:\Program Files\Oray\SunLogin\SunloginClient\SunloginClient.exe"),
             ProcessInfo(11, "renamed.exe", r"C:\Program Files (x86)\TeamViewer\renamed.exe"),
             ProcessInfo(12, "explorer.exe", r"C:\Windows\explorer.exe")]
    outcome = process_usage(procs, catalogue, [])
    hits = {f["pid"]: (f["software"], f["matched_by"]) for f in outcome.details["forbidden"]}
    assert hits == {10: ("sunlogin", "name"), 11: ("teamviewer", "path")}


def test_clean_machine_passes(catalogue):
    outcome = process_usage([ProcessInfo(1, "systemd", "/usr/lib/systemd/systemd")], catalogue, [])
    assert outcome.status == "ok" and "未发现禁止使用的软件" in outcome.message


def test_bad_catalogue_names_the_field(tmp_path):
    with pytest.raises(ConfigError) as exc:
        parse_catalogue("software:\n  - {id: x, category: toys, windows: [a.exe]}\n", "cat.yaml")
    assert exc.value.field == "software[0].category"


def test_listening_ports_outside_allow_list():
    listeners = [Listener("tcp", "0.0.0.0", 22, 1, "sshd"), Listener("tcp", "0.0.0.0", 3389, 2, "xrdp"),
                 Listener("tcp", "127.0.0.1", 5432, 3, "postgres"), Listener("udp", "0.0.0.0", 68, 4, "dhclient")]
    outcome = listening_ports(listeners, [22])
    assert outcome.status == "fail" and "3389 远程桌面 RDP（xrdp）" in outcome.message
    assert outcome.details["loopback_only_ports"] == [5432]
    assert listening_ports(listeners, [22, 3389]).status == "ok"


def test_windows_rpc_endpoints_are_not_flagged():
    listeners = [Listener("tcp", "0.0.0.0", 135, 900, "svchost.exe"), Listener("tcp", "0.0.0.0", 49664, 700, "lsass.exe"),
                 Listener("tcp", "0.0.0.0", 49670, 800, "AnyDesk.exe")]
    outcome = listening_ports(listeners, [], windows=True)
    assert [u["port"] for u in outcome.details["unexpected"]] == [49670]


def test_removable_media_allow_list():
    stick = StorageVolume("E:\\", r"\\.\PHYSICALDRIVE1", "usb", serial="60A44C413A8CF0B1A99C0E3B", model="Kingston")
    assert removable_media([stick], []).status == "fail"
    assert "USB 存储 E:\\" in removable_media([stick], []).message
    assert removable_media([stick], ["60a44c413a8cf0b1a99c0e3b"]).status == "ok"
    assert removable_media([], []).message == "未挂载移动存储"


def test_accounts_against_staff():
    sessions = [Session("zhangsan", "tty1"), Session(r"CLINIC\lisi", "rdp-tcp#0", host="10.10.3.4")]
    outcome = accounts(sessions, ["zhangsan"])
    assert outcome.status == "fail" and "CLINIC\\lisi" in outcome.message and "10.10.3.4" in outcome.message
    assert accounts(sessions, ["ZhangSan", "lisi"]).status == "ok"
    # No staff accounts configured: nothing to check against, so "could not verify" (error), never a pass.
    unchecked = accounts(sessions, [])
    assert unchecked.status == "error" and "无法核对" in unchecked.message
    assert accounts([], []).status == "error"
