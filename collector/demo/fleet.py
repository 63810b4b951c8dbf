"""A simulated county for `make demo`: agents that report through the real HTTP API in the real wire format.

Each simulated point has its own agent token and sends what a real agent would send, with faults that come
and go: a kiosk offline, toner running out, remote-control software, the internet reachable, a core link
that degrades, a point whose agent has gone silent. Points are registered with ``simulated=True`` so the UI
marks them.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from agent import transport
from agent.vocabulary import (
    HOST_RESOURCES,
    IDENTITY_FINGERPRINT,
    ISOLATION_INTERFACES,
    ISOLATION_INTERNET,
    NET_CORE_DNS,
    NET_CORE_HTTPS,
    NET_CORE_ICMP,
    NET_CORE_TCP,
    USAGE_ACCOUNTS,
    USAGE_LISTENING_PORTS,
    USAGE_PROCESSES,
    USAGE_REMOVABLE_MEDIA,
    device_check,
)
from agent.wire import Fingerprint, Host, Report, Result, report_to_dict, utcnow
from collector.accounts import users
from collector.demo import policy as demo_policy
from collector.store import points as points_repo

log = logging.getLogger("pointwatch.demo")

PRINTER_CHECK = device_check("printer")
COUNTY = "甘肃省/兰州市/榆中县"
TOWNS = {
    "城关镇": ["东关村", "西关村", "南关村", "兴隆村", "周前村", "新民村", "三角城村", "小康营村"],
    "夏官营镇": ["夏官营村", "红柳沟村", "过店子村", "高墩营村", "大寨村", "徐家峡村", "石门村"],
    "高崖镇": ["高崖村", "水岔沟村", "花岔村", "上堡子村", "中连川村", "红土坡村", "张家坪村"],
    "金崖镇": ["金崖村", "岳家巷村", "黄家庄村", "周前庄村", "苑川村", "邴家湾村", "骆驼巷村", "永丰村"],
    "和平镇": ["和平村", "袁家营村", "饶家湾村", "陆家湾村", "谢家营村", "哈家咀村", "烟坪村"],
    "甘草店镇": ["甘草店村", "三墩营村", "车道岭村", "洼滩村", "高家湾村", "史家岔村", "二十里铺村"],
    "青城镇": ["城河村", "新民村", "瓦窑村", "苇茨湾村", "河口村", "青城村", "狼营村", "东滩村"],
    "定远镇": ["定远村", "驿坪村", "水坡村", "蒋家营村", "毛集村", "上庄村", "清水村", "寺沟村"],
}
STATION = "医保服务站"  # a town's own station; villages have 医保服务点

FAULTS = ("kiosk_offline", "toner_out", "remote_control", "internet_reachable", "core_degraded", "silent",
          "usb_disk", "queue_offline")


@dataclass
class SimPoint:
    code: str
    name: str
    region: str
    rng: random.Random
    faults: set[str] = field(default_factory=set)
    seq: int = 0
    toner: float = 0.8
    agent_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    token: str = ""
    policy_digest: str | None = None  # of the policy the simulated agent runs (fetched, as an agent does)
    policy_etag: str | None = None


def fleet() -> list[tuple[str, str, str]]:
    """(code, name, region) of every simulated point: one station per town plus its villages."""
    points = []
    for t, (town, villages) in enumerate(TOWNS.items(), start=1):
        points.append((f"620123{t:03d}000", f"{town}{STATION}", f"{COUNTY}/{town}"))
        for v, village in enumerate(villages, start=1):
            points.append((f"620123{t:03d}{v:03d}", f"{town}{village}医保服务点", f"{COUNTY}/{town}/{village}"))
    return points


def seed(store, data_dir: Path, interval_s: int, created_at: datetime | None = None) -> list[SimPoint]:
    """Register the fleet and give each simulated agent a token (kept in the data dir across restarts).

    ``created_at``: when a point not yet registered counts as registered (scoring counts nothing before it);
    the demo registers its points back where their written history starts (collector/demo/history.py).
    """
    token_file = Path(data_dir) / "demo-fleet-tokens.json"
    tokens: dict[str, str] = json.loads(token_file.read_text()) if token_file.exists() else {}
    sims = []
    for i, (code, name, region) in enumerate(fleet()):
        points_repo.upsert_point(store, code, name, region, profile="lanzhou-basic-2023", simulated=True,
                                 report_interval_s=interval_s, created_at=created_at)
        if code not in tokens:
            tokens[code] = users.create_token(store, "agent", point_code=code, description="demo simulated agent")
        # The same agent id on every start: the written history and the live reports are one machine's.
        sim = SimPoint(code, name, region, random.Random(i), token=tokens[code],
                       agent_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"pointwatch-demo:{code}")))
        sim.toner = 0.15 + sim.rng.random() * 0.8
        sims.append(sim)
    token_file.write_text(json.dumps(tokens))
    token_file.chmod(0o600)
    demo_policy.apply(store, COUNTY)  # the county's exam, with a few village overrides
    for sim in sims:
        sim.policy_digest = demo_policy.current_digest(store, sim.code)
    return sims


def _scenario(sims: list[SimPoint], tick: int) -> None:
    """Faults that come and go, on fixed points so the demo tells the same story every time."""
    schedule = {
        3: ("kiosk_offline", 6, 3),     # point index: (fault, period in ticks, ticks on)
        9: ("remote_control", 8, 5),
        14: ("internet_reachable", 10, 4),
        20: ("core_degraded", 7, 3),
        27: ("queue_offline", 9, 4),
        33: ("usb_disk", 12, 6),
        41: ("silent", 20, 8),
        50: ("kiosk_offline", 11, 2),
    }
    for index, (fault, period, on) in schedule.items():
        if index < len(sims):
            active = (tick % period) < on
            (sims[index].faults.add if active else sims[index].faults.discard)(fault)
    for sim in sims:
        if sim.toner <= 0.0:
            sim.toner = 1.0  # someone replaced the cartridge
        sim.toner = max(0.0, sim.toner - sim.rng.uniform(0.0, 0.02))


def _result(check, target, status, message, value=None, unit=None, **details) -> Result:
    return Result(check=check, target=target, status=status, message=message, value=value, unit=unit,
                  details=details, observed_at=utcnow(), duration_ms=round(random.uniform(1, 40), 1))


def simulate_results(sim: SimPoint, at: datetime | None = None) -> list[Result]:
    """The results of one check cycle of the point as its faults stand, observed at ``at`` (default now)."""
    out = _simulate(sim)
    if at is not None:
        for r in out:
            r.observed_at = at
    return out


def _simulate(sim: SimPoint) -> list[Result]:
    rng, f = sim.rng, sim.faults
    rtt = rng.uniform(0.006, 0.030)
    loss = 0.0
    if "core_degraded" in f:
        rtt, loss = rng.uniform(0.25, 0.6), rng.choice((0.33, 0.67))
    icmp_status = "warn" if "core_degraded" in f else "ok"
    out = [
        _result(NET_CORE_ICMP, "核心网关", icmp_status,
                f"10.10.0.1 平均时延 {rtt * 1000:.1f} ms，丢包率 {loss:.0%}" +
                ("（核心网络质量下降）" if icmp_status == "warn" else ""),
                round(rtt, 4), "seconds", method="icmp", loss_ratio=loss, rtt_avg_s=round(rtt, 4)),
        _result(NET_CORE_TCP, "省医保信息平台", "ok", f"10.10.1.20:443 连接成功，用时 {rtt * 1100:.1f} ms",
                round(rtt * 1.1, 4), "seconds"),
        _result(NET_CORE_DNS, "ybj.gs.hsip.gov.cn", "ok", "ybj.gs.hsip.gov.cn 解析为 10.10.1.20（与预期一致）",
                round(rtt / 3, 4), "seconds", addresses=["10.10.1.20"]),
        _result(NET_CORE_HTTPS, "网上办理渠道", "ok", "https://10.10.1.20/health 返回 200，证书剩余 210 天",
                210, "days", status_code=200),
    ]
    if "internet_reachable" in f:
        out.append(_result(ISOLATION_INTERNET, "互联网隔离", "fail",
                           "违反专网要求：可访问互联网 223.5.5.5:53（TCP）、www.baidu.com（DNS 解析成功）", 2, "count",
                           reachable=["223.5.5.5:53", "www.baidu.com"]))
    else:
        out.append(_result(ISOLATION_INTERNET, "互联网隔离", "ok", "互联网不可达（3 个探测目标均无法访问）", 0, "count"))
    out.append(_result(ISOLATION_INTERFACES, "网卡与路由", "ok", f"仅启用有线网卡 eth0，地址 10.20.{int(sim.code[-3:]) % 250}.15 在专网网段内"))
    out.append(_result(IDENTITY_FINGERPRINT, "本机", "ok", "本机标识：3 项硬件标识已采集",
                       machine_id=sim.agent_id, serial=f"SN{sim.code}"))
    if "remote_control" in f:
        out.append(_result(USAGE_PROCESSES, "禁用软件", "fail", "发现禁用软件：向日葵远程控制（SunloginClient.exe）",
                           1, "count", forbidden=[{"name": "向日葵", "process": "SunloginClient.exe"}]))
    else:
        out.append(_result(USAGE_PROCESSES, "禁用软件", "ok", "未发现禁用软件；必需进程均在运行", 0, "count"))
    if "usb_disk" in f:
        out.append(_result(USAGE_REMOVABLE_MEDIA, "移动存储", "fail", "发现未登记的移动存储：Kingston DataTraveler（E:）",
                           1, "count"))
    else:
        out.append(_result(USAGE_REMOVABLE_MEDIA, "移动存储", "ok", "未接入移动存储", 0, "count"))
    out.append(_result(USAGE_LISTENING_PORTS, "监听端口", "ok", "无白名单外的监听端口", 0, "count"))
    out.append(_result(USAGE_ACCOUNTS, "登录账号", "ok", "当前登录账号均为登记的工作人员：ybzhangsan", 0, "count",
                       accounts=["ybzhangsan"]))
    out.append(_result(HOST_RESOURCES, "本机", "ok", "资源正常：CPU 12%，内存 48%，磁盘(C:) 61%", 0.61, "ratio"))
    out.append(_device("kiosk", "自助服务一体机", "kiosk_offline" not in f))
    out.append(_device("queue", "自助取号机", "queue_offline" not in f))
    out.append(_device("display", "电子显示屏", True))
    out.append(_device("scanner", "OCR扫描仪", True))
    out.append(_printer(sim.toner))
    return out


def _device(kind: str, name: str, up: bool) -> Result:
    # The details have the shape of agent/checks/devices: present, working and one entry per probe method.
    if kind == "scanner":
        methods = [{"method": "usb", "answered": up, "status": "ok" if up else "fail",
                    "message": "USB 设备 04c5:1476 在位" if up else "未发现 USB 设备 04c5:1476"}]
    else:
        methods = [{"method": "icmp", "answered": up, "status": "ok" if up else "fail",
                    "message": "响应正常" if up else "无响应"},
                   {"method": "tcp", "answered": up, "status": "ok" if up else "fail",
                    "message": "端口 8080 连接成功" if up else "端口 8080 连接超时"}]
    details = {"kind": kind, "required": True, "present": up, "working": up, "methods": methods}
    if up:
        return _result(f"device.{kind}", name, "ok", f"{name}正常", 1, None, **details)
    return _result(f"device.{kind}", name, "fail", f"{name}未检测到：ICMP 与 TCP 8080 均无响应", 0, None, **details)


def _printer(toner: float) -> Result:
    supplies = [{"index": "1.1", "description": "黑色墨粉", "type": "toner", "level": round(toner * 100),
                 "max_capacity": 100, "ratio": round(toner, 3), "state": "measured"},
                {"index": "1.2", "description": "硒鼓", "type": "opc", "level": 70, "max_capacity": 100, "ratio": 0.7,
                 "state": "measured"}]
    if toner <= 0.0:
        return _result(PRINTER_CHECK, "打印机", "fail", "打印机故障：无墨粉", 0, None, supplies=supplies,
                       conditions=["no_toner"])
    if toner < 0.1:
        return _result(PRINTER_CHECK, "打印机", "warn", f"墨粉不足：黑色墨粉剩余 {toner:.0%}", 1, None,
                       supplies=supplies, conditions=["low_toner"])
    return _result(PRINTER_CHECK, "打印机", "ok", f"打印机就绪，黑色墨粉剩余 {toner:.0%}", 1, None,
                   supplies=supplies)


def sim_report(sim: SimPoint, at: datetime | None = None) -> Report:
    """The point's next report as the agent builds it, collected and sent at ``at`` (default now)."""
    sim.seq += 1
    now = at or utcnow()
    host = Host(hostname=f"YB-{sim.code[-6:]}", os="Windows 10 专业版 22H2", boot_time=now - timedelta(days=3),
                fingerprint=Fingerprint(sim.agent_id, f"SN{sim.code}", [f"00:1a:2b:{int(sim.code[-6:-3]) % 256:02x}:{int(sim.code[-3:]) % 256:02x}:01"]))
    report = Report(report_id=str(uuid.uuid4()), seq=sim.seq, agent_id=sim.agent_id, point_code=sim.code,
                    agent_version="0.1.0-sim", collected_at=now, sent_at=now, host=host,
                    results=simulate_results(sim, at))
    report.policy_digest = sim.policy_digest  # the wire's policy_digest (collector/ingest/accept.py)
    return report


def _report(sim: SimPoint, at: datetime | None = None) -> dict:
    body = report_to_dict(sim_report(sim, at))
    if sim.policy_digest:
        body["policy_digest"] = sim.policy_digest
    return body


POLICY_REFRESH_TICKS = 20  # the simulated agents fetch their policy every 20 rounds (5 min at 15 s)


def fetch_policy(base_url: str, sim: SimPoint) -> None:
    """GET /api/v1/agent/policy as the point's agent: keep the digest of the payload (ETag / 304 when
    unchanged). The simulated agent runs no checks, so it keeps the digest only; the real agent verifies the
    signature against the keys it pinned at enrolment."""
    import base64
    import urllib.error
    import urllib.request

    headers = {"Authorization": f"Bearer {sim.token}"}
    if sim.policy_etag:
        headers["If-None-Match"] = sim.policy_etag
    request = urllib.request.Request(base_url + "/api/v1/agent/policy", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            payload = json.loads(base64.b64decode(json.loads(resp.read())["payload"]))
            sim.policy_digest, sim.policy_etag = payload["digest"], resp.headers.get("ETag")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            sim.policy_digest = sim.policy_etag = None
        elif exc.code != 304:
            log.warning("demo_policy_fetch_failed point=%s status=%s", sim.code, exc.code)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("demo_policy_fetch_failed point=%s error=%s", sim.code, exc)


def run(base_url: str, sims: list[SimPoint], interval_s: float, stop: threading.Event, scenario=None) -> None:
    """Send every simulated point's report each interval through the real API, until ``stop``.

    ``scenario(sims, tick)`` sets the faults before each round (default: the 15-second schedule here)."""
    scenario = scenario or _scenario
    tick = 0
    while not stop.is_set():
        started = time.monotonic()
        scenario(sims, tick)
        for sim in sims:
            if "silent" in sim.faults or stop.is_set():
                continue
            if tick % POLICY_REFRESH_TICKS == 0:
                fetch_policy(base_url, sim)
            try:
                transport.send_reports(base_url, sim.token, [_report(sim)], timeout=10)
            except transport.SendError as exc:
                log.warning("demo_send_failed point=%s error=%s", sim.code, exc)
        tick += 1
        stop.wait(max(0.5, interval_s - (time.monotonic() - started)))
