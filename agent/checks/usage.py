"""usage.* (专用): the terminal is used for insurance business only.

Processes (forbidden catalogue, required software), removable storage, listening ports and logged-in
accounts. Each probe is a plain function of the platform's facts and the config, so tests feed it real
processes and sockets they start themselves, or recorded facts.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from agent.checks import Outcome, Probe, read_fact, unavailable
from agent.checks.software import (
    CATEGORY_LABEL,
    Software,
    exempted,
    load_catalogue,
    match_processes,
    normalise_name,
    require_known,
)
from agent.confignode import Node, optional
from agent.platform import Listener, ProcessInfo, Session, StorageVolume
from agent.vocabulary import (
    CHECKS_BY_FAMILY,
    USAGE_ACCOUNTS,
    USAGE_LISTENING_PORTS,
    USAGE_PROCESSES,
    USAGE_REMOVABLE_MEDIA,
)

CHECK_IDS = CHECKS_BY_FAMILY["usage"]

# Well-known ports of remote-control and file-sharing services, named in messages.
PORT_NAMES = {21: "FTP", 23: "Telnet", 445: "SMB 文件共享", 3389: "远程桌面 RDP", 5800: "VNC(HTTP)", 5900: "VNC 远程控制",
              5901: "VNC 远程控制", 5938: "TeamViewer", 7070: "AnyDesk", 21115: "RustDesk", 21116: "RustDesk",
              21118: "RustDesk"}
# Windows' own RPC endpoints: the endpoint mapper and the dynamic ports its system services open. They are
# on every Windows PC and say nothing about how the terminal is used.
WINDOWS_RPC_PROCESSES = {"svchost.exe", "lsass.exe", "wininit.exe", "services.exe", "spoolsv.exe"}


@dataclass
class UsageConfig:
    forbidden_software: str = "default"
    catalogue: list[Software] = field(default_factory=list)
    allowed_software: list[str] = field(default_factory=list)
    # Process name or path globs exempt at this point (a mandated government edition of an app the
    # catalogue forbids, e.g. 政务钉钉); the rest of that entry stays forbidden.
    exempt_software: list[str] = field(default_factory=list)
    required_processes: list[str] = field(default_factory=list)
    allowed_ports: list[int] = field(default_factory=list)
    staff_accounts: list[str] = field(default_factory=list)
    allowed_usb_serials: list[str] = field(default_factory=list)


def parse_config(node: Node | None) -> UsageConfig:
    if node is None:
        return UsageConfig(catalogue=load_catalogue(Node("default", "usage.forbidden_software", None, "<defaults>")))
    m = node.mapping(("forbidden_software", "allowed_software", "exempt_software", "required_processes",
                      "allowed_ports", "staff_accounts", "allowed_usb_serials"))
    spec_node = m.get("forbidden_software") or Node("default", "usage.forbidden_software", node.line, node.file)
    catalogue = load_catalogue(spec_node)
    allowed_software = optional(m, "allowed_software", [], Node.str_list)
    if allowed_software:
        require_known(m["allowed_software"], allowed_software, catalogue)
    return UsageConfig(
        forbidden_software=spec_node.str(),
        catalogue=catalogue,
        allowed_software=allowed_software,
        exempt_software=optional(m, "exempt_software", [], Node.str_list),
        required_processes=optional(m, "required_processes", [], Node.str_list),
        allowed_ports=[n.port() for n in optional(m, "allowed_ports", [], Node.items)],
        staff_accounts=optional(m, "staff_accounts", [], Node.str_list),
        allowed_usb_serials=optional(m, "allowed_usb_serials", [], Node.str_list),
    )


def probes(config, platform) -> list[Probe]:
    u: UsageConfig = config.usage or parse_config(None)
    out = []
    if config.enabled(USAGE_PROCESSES):
        catalogue = [s for s in u.catalogue if s.id not in set(u.allowed_software)]
        out.append(Probe(USAGE_PROCESSES, "本机进程",
                         lambda: process_usage(_processes(platform), catalogue, u.required_processes,
                                               u.exempt_software), deadline=30))
    if config.enabled(USAGE_REMOVABLE_MEDIA):
        out.append(Probe(USAGE_REMOVABLE_MEDIA, "移动存储",
                         lambda: removable_media(read_fact(platform, "removable_volumes"), u.allowed_usb_serials),
                         deadline=30))
    if config.enabled(USAGE_LISTENING_PORTS):
        out.append(Probe(USAGE_LISTENING_PORTS, "监听端口",
                         lambda: listening_ports(_listeners(platform), u.allowed_ports, platform.name == "windows"),
                         deadline=30))
    if config.enabled(USAGE_ACCOUNTS):
        # No session at all is a fact (a PC at the login screen), not a failed read.
        out.append(Probe(USAGE_ACCOUNTS, "登录账号", lambda: accounts(read_fact(platform, "sessions"), u.staff_accounts),
                         deadline=10))
    return out


def _processes(platform) -> list[ProcessInfo]:
    procs = read_fact(platform, "processes")
    if not procs:  # the agent itself is running: an empty list is a listing that failed
        raise unavailable("processes", platform.fact_query("processes"), "returned no process")
    return procs


def _listeners(platform) -> list[Listener]:
    found = read_fact(platform, "listeners")
    if not found and platform.name == "windows":
        # Windows always listens on 135 (RPC endpoint mapper): nothing at all is a listing that failed.
        raise unavailable("listeners", platform.fact_query("listeners"), "returned no listening socket")
    return found


# -- usage.processes -------------------------------------------------------------------------------


def process_usage(processes: list[ProcessInfo], catalogue: list[Software], required: list[str],
                  exempt: list[str] = ()) -> Outcome:
    if not processes:  # the agent itself is running: an empty list is a listing that failed
        return Outcome("error", "无法核对进程：系统未返回任何进程", details={"reason": "no_processes"})
    hits, spared = [], []
    for sw, p, how in match_processes(processes, catalogue):
        why = exempted(p, list(exempt))
        if why:
            spared.append({"software": sw.id, "pid": p.pid, "process": p.name, "exe": p.exe, "exempted_by": why})
        else:
            hits.append((sw, p, how))
    running = {normalise_name(p.name) for p in processes} | \
        {normalise_name(p.exe.replace("\\", "/").rsplit("/", 1)[-1]) for p in processes if p.exe}
    missing = [r for r in required if normalise_name(r) not in running]
    found = [{"software": sw.id, "name": sw.name, "category": sw.category, "pid": p.pid, "process": p.name,
              "exe": p.exe, "user": p.username, "matched_by": how} for sw, p, how in hits]
    details = {"forbidden": found, "required": required, "missing_required": missing,
               "process_count": len(processes), "catalogue_size": len(catalogue), "exempted": spared}
    problems = []
    if found:
        by_software: dict[str, list[str]] = {}
        for f in found:
            label = f"{f['name']}（{CATEGORY_LABEL[f['category']]}）"
            by_software.setdefault(label, []).append(f"{f['process']} pid {f['pid']}")
        problems.append("发现禁止使用的软件：" + "；".join(f"{k}：{'、'.join(v)}" for k, v in by_software.items()))
    if missing:
        problems.append("必需软件未运行：" + "、".join(missing))
    if problems:
        return Outcome("fail", "违反专机专用：" + "；".join(problems), value=len(found), unit="count", details=details)
    extra = f"，必需软件 {len(required)} 个均在运行" if required else ""
    if spared:
        extra += f"，已豁免 {len(spared)} 个：" + "、".join(sorted({s["process"] for s in spared}))
    return Outcome("ok", f"未发现禁止使用的软件（已检查 {len(processes)} 个进程）{extra}", value=0, unit="count",
                   details=details)


# -- usage.removable_media -------------------------------------------------------------------------

BUS_LABEL = {"usb": "USB 存储", "mmc": "SD 卡", "removable": "移动存储"}


def removable_media(volumes: list[StorageVolume], allowed_serials: list[str]) -> Outcome:
    allowed = {s.strip().lower() for s in allowed_serials}
    rows, unregistered = [], []
    for v in volumes:
        ok = bool(v.serial) and v.serial.strip().lower() in allowed or \
            str(v.details.get("disk_serial", "")).strip().lower() in allowed - {""}
        rows.append({"mountpoint": v.mountpoint, "device": v.device, "bus": v.bus, "serial": v.serial, "model": v.model,
                     "size_bytes": v.size_bytes, "allowed": ok, **{k: x for k, x in v.details.items() if k != "disk_serial"}})
        if not ok:
            unregistered.append(v)
    details = {"volumes": rows, "allowed_serials": allowed_serials}
    if unregistered:
        text = "；".join(f"{BUS_LABEL.get(v.bus, '移动存储')} {v.mountpoint}（{v.model or v.device}，序列号 {v.serial or '无'}）"
                        for v in unregistered)
        return Outcome("fail", f"违反数据安全管理：挂载了未登记的移动存储：{text}", value=len(unregistered), unit="count",
                       details=details)
    if volumes:
        return Outcome("ok", f"仅挂载已登记的移动存储（{len(volumes)} 个）", value=0, unit="count", details=details)
    return Outcome("ok", "未挂载移动存储", value=0, unit="count", details=details)


# -- usage.listening_ports -------------------------------------------------------------------------


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def listening_ports(listeners: list[Listener], allowed_ports: list[int], windows: bool = False) -> Outcome:
    """TCP listeners reachable from the network (not loopback-only) whose port is not allow-listed."""
    if windows and not listeners:
        # Windows always listens on 135 (RPC endpoint mapper): nothing at all is a listing that failed.
        return Outcome("error", "无法核对监听端口：系统未返回任何监听端口", details={"reason": "no_listeners"})
    allowed = set(allowed_ports)
    exposed = [x for x in listeners if x.proto == "tcp" and not _is_loopback(x.address)]
    bad = []
    for x in exposed:
        if x.port in allowed:
            continue
        if windows and x.process.lower() in WINDOWS_RPC_PROCESSES and (x.port == 135 or x.port >= 49152):
            continue
        bad.append(x)
    ports = sorted({x.port for x in bad})
    details = {
        "unexpected": [{"port": x.port, "address": x.address, "pid": x.pid, "process": x.process} for x in bad],
        "exposed_ports": sorted({x.port for x in exposed}), "allowed_ports": sorted(allowed),
        "loopback_only_ports": sorted({x.port for x in listeners if x.proto == "tcp" and _is_loopback(x.address)}),
    }
    if bad:
        named = []
        for port in ports:
            procs = sorted({x.process for x in bad if x.port == port and x.process})
            label = PORT_NAMES.get(port)
            named.append(f"{port}" + (f" {label}" if label else "") + (f"（{'、'.join(procs)}）" if procs else ""))
        return Outcome("fail", f"有未允许的端口在监听：{'；'.join(named)}", value=len(ports), unit="count", details=details)
    return Outcome("ok", f"对外监听的端口均在允许范围内（{', '.join(map(str, details['exposed_ports'])) or '无'}）",
                   value=0, unit="count", details=details)


# -- usage.accounts --------------------------------------------------------------------------------


def _account(name: str) -> str:
    """'DOMAIN\\zhangsan' and 'zhangsan@domain' compare as 'zhangsan'."""
    return name.rsplit("\\", 1)[-1].split("@", 1)[0].strip().lower()


def accounts(sessions: list[Session], staff: list[str]) -> Outcome:
    staff_set = {_account(s) for s in staff}
    rows = [{"user": s.user, "terminal": s.terminal, "host": s.host, "started": s.started,
             "registered": _account(s.user) in staff_set} for s in sessions]
    users = sorted({s.user for s in sessions})
    details = {"sessions": rows, "staff_accounts": staff}
    if not staff:
        # Nothing to check the sessions against: the check saw no fact about 人员与账号, so it earns nothing.
        return Outcome("error", f"未配置服务点登记账号（usage.staff_accounts），无法核对；当前登录：{'、'.join(users) or '无'}",
                       value=len(users), unit="count", details=details)
    strangers = sorted({r["user"] for r in rows if not r["registered"]})
    if strangers:
        remote = sorted({r["host"] for r in rows if not r["registered"] and r["host"]})
        where = f"（远程来自 {'、'.join(remote)}）" if remote else ""
        return Outcome("fail", f"人员与账号不符：未登记的账号已登录：{'、'.join(strangers)}{where}", value=len(strangers),
                       unit="count", details=details)
    if not sessions:
        return Outcome("ok", "当前无账号登录", value=0, unit="count", details=details)
    return Outcome("ok", f"登录账号均为登记人员：{'、'.join(users)}", value=0, unit="count", details=details)
