"""The forbidden-software catalogue: glob patterns, the names issue 16 lists, exemptions, and detection by
name alone when the executable path cannot be read (the agent unprivileged on Linux)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from agent.checks.software import load_catalogue, match_processes
from agent.checks.usage import parse_config, process_usage
from agent.confignode import Node, parse_yaml
from agent.platform import ProcessInfo
from tests.conftest import require_root


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue(Node("default", "usage.forbidden_software", 1, "<test>"))


def found(catalogue, *procs: ProcessInfo) -> dict[int, str]:
    return {p.pid: sw.id for sw, p, _how in match_processes(list(procs), catalogue)}


def test_versioned_and_portable_executables_match_by_pattern(catalogue):
    procs = [ProcessInfo(1, "AnyDesk-7.1.16.exe", r"D:\下载\AnyDesk-7.1.16.exe"),
             ProcessInfo(2, "ANYDESK-8.0.EXE"),                       # Windows names are case-insensitive
             ProcessInfo(3, "SunloginClient_15.2.0.63062_x64.exe", r"C:\Users\a\Desktop\SunloginClient_15.2.0.63062_x64.exe"),
             ProcessInfo(4, "sunlogin_portable.exe"),
             ProcessInfo(5, "TeamViewerQS_zhcn.exe"),
             ProcessInfo(6, "AnyViewerSetup.exe")]
    assert found(catalogue, *procs) == {1: "anydesk", 2: "anydesk", 3: "sunlogin", 4: "sunlogin", 5: "teamviewer",
                                        6: "anyviewer"}


ISSUE_NAMES = {
    "teamviewer": ["TeamViewer_Desktop.exe", "tv_w64.exe", "TeamViewerQS.exe"],
    "sunlogin": ["oray_rundaemon", "OrayRemoteShell.exe", "OrayRemoteService.exe"],
    "awesun": ["AweSun.exe"],
    "todesk": ["ToDesk_Session", "todeskd"],
    "anyviewer": ["AnyViewer.exe"],
    "chrome_remote_desktop": ["remoting_host.exe"],
    "radmin": ["rserver3.exe"],
    "splashtop": ["SRService.exe"],
    "quick_assist": ["QuickAssist.exe"],
    "dingtalk": ["DingTalk.exe"], "wecom": ["WXWork.exe"], "feishu": ["Feishu.exe"],
    "thunder": ["XLServicePlatform.exe", "MiniThunderPlatform.exe"],
    "baidu_netdisk": ["BaiduNetdisk.exe"],
    "windows_games": ["sol.exe", "winmine.exe", "SpiderSolitaire.exe"],
}


def test_the_names_issue_16_lists_are_detected_by_name_alone(catalogue):
    procs = [ProcessInfo(i, name) for i, name in enumerate(n for names in ISSUE_NAMES.values() for n in names)]
    hits = found(catalogue, *procs)
    assert [hits.get(p.pid) for p in procs] == [sid for sid, names in ISSUE_NAMES.items() for _ in names]
    assert all(s.source for s in catalogue)


def test_paths_windows_7_games_and_sunlogin_on_linux(catalogue):
    procs = [ProcessInfo(1, "renamed.exe", r"C:\Program Files\Microsoft Games\Chess\renamed.exe"),
             ProcessInfo(2, "helper", "/opt/sunlogin/bin/helper"),
             ProcessInfo(3, "x.exe", r"C:\Program Files\WindowsApps\Microsoft.MicrosoftSolitaireCollection_4.19.3190.0_x64__8wekyb3d8bbwe\x.exe")]
    assert found(catalogue, *procs) == {1: "windows_games", 2: "sunlogin", 3: "windows_games"}


def test_security_software_and_lookalikes_are_not_forbidden(catalogue):
    procs = [ProcessInfo(1, "360Safe.exe", r"C:\Program Files (x86)\360\360Safe\360Safe.exe"),
             ProcessInfo(2, "360Tray.exe"), ProcessInfo(3, "ZhuDongFangYu.exe"), ProcessInfo(4, "360sd.exe"),
             ProcessInfo(5, "thunderbird.exe"), ProcessInfo(6, "HipsDaemon.exe"), ProcessInfo(7, "explorer.exe"),
             ProcessInfo(8, "svchost.exe"), ProcessInfo(9, "chrome.exe")]
    assert found(catalogue, *procs) == {}


def test_exempt_software_spares_the_mandated_edition_only(catalogue):
    cfg = parse_config(parse_yaml('exempt_software: ["*\\\\DingTalkGov\\\\*", "zwwx*.exe"]\n', "agent.yaml"))
    assert cfg.exempt_software == ["*\\DingTalkGov\\*", "zwwx*.exe"]
    gov = ProcessInfo(1, "DingTalk.exe", r"C:\Program Files (x86)\DingTalkGov\main\current\DingTalk.exe")
    consumer = ProcessInfo(2, "DingTalk.exe", r"C:\Program Files (x86)\DingDing\main\current\DingTalk.exe")
    zwwx = ProcessInfo(3, "zwwx_WXWork.exe", r"C:\Program Files (x86)\WXWork\zwwx_WXWork.exe")
    out = process_usage([gov, zwwx], catalogue, [], cfg.exempt_software)
    assert out.status == "ok" and "已豁免 2 个" in out.message
    assert {e["pid"]: e["exempted_by"] for e in out.details["exempted"]} == {1: "*\\DingTalkGov\\*", 3: "zwwx*.exe"}
    out = process_usage([gov, consumer], catalogue, [], cfg.exempt_software)
    assert out.status == "fail" and [f["pid"] for f in out.details["forbidden"]] == [2]


def test_root_daemon_whose_exe_is_unreadable_is_found_by_name(tmp_path, catalogue):
    """Root's oray_rundaemon/todeskd, listed by an unprivileged agent: psutil cannot read /proc/PID/exe."""
    require_root("starting a root daemon and listing it as another user")
    sleep = shutil.which("sleep")
    daemons = []
    for name in ("oray_rundaemon", "todeskd"):
        exe = tmp_path / name
        shutil.copy(sleep, exe)
        daemons.append(subprocess.Popen([str(exe), "60"]))
    time.sleep(0.1)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, list processes as the agent does, report what it saw
        try:
            os.close(read)
            os.setgid(65534)
            os.setuid(65534)
            from agent.platform.linux import LinuxPlatform

            procs = LinuxPlatform().processes()
            out = process_usage(procs, catalogue, [])
            rows = [{"pid": f["pid"], "software": f["software"], "exe": f["exe"], "how": f["matched_by"]}
                    for f in out.details["forbidden"]]
            os.write(write, json.dumps(rows).encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        data = b""
        while chunk := os.read(read, 65536):
            data += chunk
        os.waitpid(pid, 0)
    finally:
        os.close(read)
        for d in daemons:
            d.kill()
            d.wait()
    rows = {r["pid"]: r for r in json.loads(data or b"[]")}
    for d, sid in zip(daemons, ("sunlogin", "todesk"), strict=True):
        assert rows[d.pid]["software"] == sid and rows[d.pid]["how"] == "name"
        assert rows[d.pid]["exe"] == ""  # the path was unreadable: the name alone found it
