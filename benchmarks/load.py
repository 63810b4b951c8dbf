"""Sustained load: N simulated agents reporting every I seconds for D seconds against real collectors.

Each simulated agent writes, on its own schedule (a random phase within the interval), a report of 20
results built with agent/wire.py — the agent's own wire format, with realistic checks (core network,
isolation, usage, devices, host) — and sends it gzip'd on a new connection (as the agent's urllib sender
does), one request at a time. The generator is asyncio with raw sockets so it costs far less than the
collector.

Printed at the end (and every minute while it runs): requests, errors, throughput, p50/p99/max latency
per minute (growing latency = the collector falls behind), and the collector's RSS
sampled every 5 s (first/last/max and the least-squares slope in MiB per hour) and its CPU seconds.
Like the real agent, a simulated agent queues its reports and sends what waits as one batch, so an
overloaded collector shows as bigger batches, growing latency and reports still queued at the end.

    .venv/bin/python benchmarks/load.py [--agents 2000] [--interval 10] [--duration 600] [--store sqlite]
                                        [--collectors 1] [--faulty 0.1] [--no-silence-phase]

--collectors N (PostgreSQL) runs N collector processes on the one database, the agents spread over them
round-robin (each keeps its collector, as behind a load balancer). Every collector pages a webhook receiver
inside the benchmark; a share of the agents (--faulty) report a fault for a while and recover, and after
the load every point falls silent, so alerts open, page and resolve. The run ends with the single-ness
checks (benchmarks/loadfleet.py: one alert row per episode, one "firing" and one "resolved" notification
per alert, one score row per point) and exits non-zero if one fails or any request failed.

With ``PW_BENCH_HEAP_LOG=/some/file`` the collector appends its Python heap size (allocated blocks) there
every 30 s, which tells a leak in Python objects from growth of the C allocator or SQLite's caches.

Loopback only; bounded (stops by itself after --duration and the settling); the collectors and their
temporary data directory (or PostgreSQL database pw_load_<pid>) are removed at the end. Never part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import random
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import loadfleet  # noqa: E402  (beside this script)
from rawhttp import read_response  # noqa: E402

from agent import wire  # noqa: E402
from agent.sender import DRAIN_PAUSE, backoff_delay  # noqa: E402

REGION = "甘肃省/兰州市/城关区/压测镇"


# -- realistic reports -----------------------------------------------------------------------------------
BATCH_LIMIT = 50  # reports per request, as agent/sender.py


def make_report(code: str, agent_id: str, seq: int, rng: random.Random, fault: bool = False) -> str:
    now = wire.utcnow()
    R = wire.Result

    def obs(ms: float) -> dict:
        return {"observed_at": now - timedelta(milliseconds=rng.uniform(0, 900)), "duration_ms": ms}

    loss = 0.0 if rng.random() > 0.05 else 1 / 3
    results = [
        R("net.core.icmp", "10.10.0.1", "ok" if loss == 0 else "warn", "核心网关 可达，平均 3.1 ms",
          value=rng.uniform(0.002, 0.02), unit="seconds",
          details={"loss_ratio": loss, "rtt_max_s": 0.03, "jitter_s": 0.002, "sent": 3}, **obs(30)),
        R("net.core.icmp", "10.10.0.2", "ok", "备用网关 可达", value=rng.uniform(0.002, 0.02), unit="seconds",
          details={"loss_ratio": 0.0, "rtt_max_s": 0.02, "jitter_s": 0.001, "sent": 3}, **obs(28)),
        R("net.core.tcp", "10.10.1.20:443", "ok", "省医保信息平台 端口可连接", value=0.004, unit="seconds",
          details={"name": "省医保信息平台"}, **obs(4)),
        R("net.core.tcp", "10.10.1.21:7001", "ok", "结算前置机 端口可连接", value=0.005, unit="seconds", **obs(5)),
        R("net.core.dns", "ybj.example.gov.cn", "ok", "解析正常", value=0.003, unit="seconds",
          details={"addresses": ["10.10.1.20"]}, **obs(3)),
        R("net.core.https", "https://10.10.1.20/health", "ok", "网上办理渠道 正常（HTTP 200）", value=0.05,
          unit="seconds", details={"status": 200, "tls_days_left": 200}, **obs(50)),
        R("isolation.internet", loadfleet.FAULT_TARGET, *(("fail", "互联网可达：223.5.5.5:53 可以连接（违反专网要求）") if fault
          else ("ok", "互联网不可达（符合专网要求）")), details={"method": "tcp"}, **obs(1000)),
        R("isolation.internet", "114.114.114.114", "ok", "互联网不可达（符合专网要求）", details={"method": "icmp"},
          **obs(1000)),
        R("isolation.internet", "www.baidu.com", "ok", "域名无法解析（符合专网要求）", details={"method": "dns"}, **obs(900)),
        R("isolation.interfaces", "interfaces", "ok", "仅允许的网卡在用", details={"up": ["eth0"]}, **obs(2)),
        R("identity.fingerprint", "host", "ok", "终端标识已采集",
          details={"machine_id": f"m-{code}", "serial": f"SN{code}"}, **obs(40)),
        R("usage.processes", "processes", "ok", "未发现禁用软件", details={"checked": 143}, **obs(60)),
        R("usage.removable_media", "usb", "ok", "无移动存储设备", **obs(5)),
        R("usage.listening_ports", "ports", "ok", "无未允许的监听端口", details={"listening": [22]}, **obs(5)),
        R("usage.accounts", "accounts", "ok", "登录账号均为登记人员", details={"accounts": ["zhangsan"]}, **obs(3)),
        R("device.kiosk", "自助服务一体机", "ok", "设备在线", value=0.002, unit="seconds", **obs(3)),
        R("device.queue", "自助取号机", "ok", "设备在线", value=0.002, unit="seconds", **obs(3)),
        R("device.printer", "打印机", "ok" if rng.random() > 0.02 else "warn", "打印机就绪，墨粉 63%",
          value=0.63, unit="ratio", details={"supplies": [{"name": "黑色墨粉", "ratio": 0.63}]}, **obs(120)),
        R("device.scanner", "OCR扫描仪", "ok", "USB 设备在位", details={"vid": "04c5"}, **obs(8)),
        R("host.resources", "host", "ok", "CPU 12%，内存 41%，磁盘 58%", value=0.12, unit="ratio",
          details={"memory_ratio": 0.41, "disk_ratio": 0.58, "uptime_s": 86400}, **obs(10)),
    ]
    report = wire.Report(
        report_id=str(uuid.uuid4()), seq=seq, agent_id=agent_id, point_code=code, agent_version="0.1.0",
        collected_at=now, sent_at=now,
        host=wire.Host(hostname=f"pc-{code}", os="Windows 10", boot_time=now - timedelta(days=1),
                       fingerprint=wire.Fingerprint(f"m-{code}", f"SN{code}", ["00:11:22:33:44:55"])),
        results=results)
    return wire.report_to_json(report)


# -- the fleet ------------------------------------------------------------------------------------------
def setup_fleet(url: str, n: int, interval: int) -> dict[str, str]:
    from collector.accounts import users
    from collector.store import Store
    from collector.store import points as points_repo

    store = Store(url)
    store.upgrade()
    tokens = {}
    for i in range(n):
        code = f"8{i:011d}"
        points_repo.upsert_point(store, code, f"压测点{i}", REGION, report_interval_s=interval)
        tokens[code] = users.create_token(store, "agent", point_code=code)
    store.close()
    return tokens


class Stats:
    def __init__(self):
        self.lat: list[tuple[float, float]] = []   # (time since start, seconds)
        self.errors: list[tuple[float, str]] = []
        self.bytes = 0
        self.reports = 0                           # acknowledged reports
        self.written = 0                           # reports the simulated agents produced
        self.left_queued = 0                       # produced but not acknowledged by the end
        self.batch_sizes: list[int] = []
        self.wal_mib_max = 0.0                     # SQLite: the largest WAL seen by the sampler
        self.pg_connections_max = 0                # PostgreSQL: the most connections to the store seen


async def exchange(port: int, head: bytes, body: bytes) -> tuple[bytes, bytes]:
    # A new connection per request, as the agent's urllib sender does (no keep-alive).
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        return await read_response(reader)
    finally:
        writer.close()


async def agent(port: int, code: str, token: str, t_start: float, t_end: float, interval: float,
                stats: Stats, rng: random.Random, timeout: float, fault: tuple[float, float] | None) -> None:
    """One point's agent: a report per interval into its queue; the queue is sent as one batch (at most
    BATCH_LIMIT, oldest first), like the real outbox and sender, so a slow answer makes the next request
    bigger instead of piling up requests. Stops at t_end; what is still queued then is counted. Reports
    written between ``fault``'s two times (seconds into the run) show the fault (loadfleet.fault_plan)."""
    agent_id = str(uuid.uuid4())
    head = (f"POST /api/v1/reports HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nContent-Encoding: gzip\r\nConnection: close\r\n").encode()
    seq = failures = 0
    queue: list[str] = []
    due = t_start + rng.uniform(0, interval)
    retry_at = 0.0
    loop = asyncio.get_running_loop()
    while True:
        now = loop.time()
        wake = min(due, max(retry_at, now)) if queue else due
        if wake >= t_end:
            break
        if wake > now:
            await asyncio.sleep(wake - now)
        while due <= loop.time() and due < t_end:  # every slot that passed while we waited on the collector
            seq += 1
            queue.append(make_report(code, agent_id, seq, rng, fault is not None and
                                     fault[0] <= due - t_start < fault[1]))
            due += interval
        if not queue or loop.time() < retry_at:  # backing off after a failure: the reports wait in the queue
            continue
        batch = queue[:BATCH_LIMIT]
        body = gzip.compress((batch[0] if len(batch) == 1 else '{"reports":[' + ",".join(batch) + "]}")
                             .encode("utf-8"), compresslevel=6)
        t0 = loop.time()
        try:
            status_line, payload = await asyncio.wait_for(exchange(port, head, body), timeout)
            stats.lat.append((t0 - t_start, loop.time() - t0))
            stats.bytes += len(body)
            stats.batch_sizes.append(len(batch))
            if b" 202 " in status_line:
                del queue[:len(batch)]
                stats.reports += len(batch)
                failures = 0
                # More waiting than one batch holds: the sender pauses between backlog batches.
                retry_at = loop.time() + (DRAIN_PAUSE if queue else 0.0)
                continue
            stats.errors.append((t0 - t_start, status_line.decode().strip() + " " +
                                 payload[:200].decode(errors="replace")))
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            stats.errors.append((t0 - t_start, f"{type(exc).__name__}: {exc}"))
        # As the agent's sender: exponential backoff with jitter (2 s doubling to 5 min) before a retry.
        failures += 1
        retry_at = loop.time() + backoff_delay(failures)
    stats.left_queued += len(queue)
    stats.written += seq


async def sampler(pids: list[int], t_start: float, t_end: float, samples: list[list], stats: list[Stats],
                  db: Path | None = None, pg: tuple[str, str] | None = None) -> None:
    loop = asyncio.get_running_loop()
    next_print = t_start + 60
    while loop.time() < t_end:
        await asyncio.sleep(5)
        t = loop.time() - t_start
        load1 = os.getloadavg()[0]
        kibs = [loadfleet.rss_kib(pid) for pid in pids]
        for kib, own in zip(kibs, samples, strict=True):
            if kib is not None:
                own.append((t, kib, load1))
        files = loadfleet.sqlite_mib(db)
        if files:
            stats[0].wal_mib_max = max(stats[0].wal_mib_max, files[1])
        if pg:  # every collector's pool holds up to 30: four of them can pass PostgreSQL's default 100
            stats[0].pg_connections_max = max(stats[0].pg_connections_max, loadfleet.pg_connections(*pg))
        if loop.time() >= next_print:
            recent = sorted(x[1] for st in stats for x in st.lat if x[0] >= t - 60)
            if recent:
                print(f"  t={t:5.0f}s  last minute: {len(recent) / 60:6.1f} req/s  p50 {1000 * recent[len(recent) // 2]:7.1f} ms"
                      f"  p99 {1000 * recent[int(len(recent) * 0.99)]:7.1f} ms  errors so far {sum(len(st.errors) for st in stats)}"
                      "  RSS " + "/".join(f"{(k or 0) / 1024:.0f}" for k in kibs) + f" MiB  load {load1:.2f}"
                      + (f"  db {files[0]:.0f} MiB  WAL {files[1]:.0f} MiB" if files else ""), flush=True)
            next_print += 60


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    var = sum((p[0] - mx) ** 2 for p in points)
    return 0.0 if var == 0 else sum((p[0] - mx) * (p[1] - my) for p in points) / var * 3600


def pct(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


async def run_load(ports: list[int], pids: list[int], tokens: dict[str, str], plan: dict, args):
    """Agent i reports to collector i mod N, always (an agent keeps its collector behind a load balancer)."""
    stats, samples = [Stats() for _ in ports], [[] for _ in ports]
    loop = asyncio.get_running_loop()
    t_start = loop.time() + 1.0
    t_end = t_start + args.duration
    rng = random.Random(args.seed)
    tasks = [agent(ports[i % len(ports)], code, token, t_start, t_end, args.interval, stats[i % len(ports)],
                   random.Random(rng.random()), args.timeout, plan.get(code))
             for i, (code, token) in enumerate(tokens.items())]
    await asyncio.gather(sampler(pids, t_start, t_end + 10, samples, stats, args.sqlite_db, args.pg), *tasks)
    return stats, samples, loop.time() - t_start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=2000)
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between one agent's reports")
    ap.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    ap.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--collectors", type=int, default=1,
                    help="collector processes on the one store (PostgreSQL only for more than 1)")
    ap.add_argument("--faulty", type=float, default=0.1,
                    help="share of the agents that report a fault (internet reachable) for a while, then recover")
    ap.add_argument("--no-silence-phase", dest="silence_phase", action="store_false",
                    help="skip waiting, after the load, for every point to be paged as silent")
    ap.add_argument("--pg-url", default=os.environ.get("POINTWATCH_TEST_PG",
                                                       "postgresql://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--timeout", type=float, default=10.0,
                    help="client timeout per request, seconds (the agent's collector.timeout default)")
    args = ap.parse_args()
    if args.collectors > 1 and args.store == "sqlite":
        ap.error("several collectors share a PostgreSQL store, not an SQLite file (--store postgresql)")
    # Stopped early (kill, Ctrl-C): still stop the collectors and remove their data in the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * args.agents + 256)), hard))
    tmp = Path(tempfile.mkdtemp(prefix="pw-load-"))
    dbname = args.sqlite_db = args.pg = None
    env = {k: v for k, v in os.environ.items() if k != "POINTWATCH_DATABASE_URL"}
    if args.store == "sqlite":
        args.sqlite_db = tmp / "data" / "pointwatch.db"
        url = f"sqlite:///{args.sqlite_db}"
        (tmp / "data").mkdir()
    else:
        import psycopg

        dbname = f"pw_load_{os.getpid()}_{secrets.token_hex(2)}"
        with psycopg.connect(args.pg_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{dbname}"')
        url = "postgresql+psycopg://" + args.pg_url.split("://", 1)[1].rsplit("/", 1)[0] + "/" + dbname
        env["POINTWATCH_DATABASE_URL"] = url
        args.pg = (args.pg_url, dbname)
    procs, receiver, failed = [], loadfleet.Receiver(), ["no run"]
    try:
        t = time.monotonic()
        tokens = setup_fleet(url, args.agents, int(args.interval))
        plan = loadfleet.fault_plan(sorted(tokens), args.faulty, args.duration, args.interval,
                                    random.Random(args.seed + 1))
        print(f"fleet of {len(tokens)} points registered in {time.monotonic() - t:.1f} s; {len(plan)} of them "
              f"report '{loadfleet.FAULT_RULE}' faults", flush=True)
        procs, ports, logs = loadfleet.start_collectors(args.collectors, tmp, env, receiver.url)
        cpu0 = [loadfleet.cpu_s(p.pid) for p in procs]
        print(f"load: {args.agents} agents x 1 report / {args.interval:g} s for {args.duration:g} s, "
              f"store {args.store}, {len(procs)} collector(s) pid {' '.join(str(p.pid) for p in procs)}, "
              f"{os.cpu_count()} CPUs, load average before {os.getloadavg()[0]:.2f}", flush=True)
        stats, samples, elapsed = asyncio.run(run_load(ports, [p.pid for p in procs], tokens, plan, args))
        cpu = [loadfleet.cpu_s(p.pid) - c0 for p, c0 in zip(procs, cpu0, strict=True)]
        report(args, stats, samples, elapsed, cpu, [loadfleet.log_failures(path) for path in logs])
        waited = loadfleet.settle(url, args.silence_phase, args.interval)
        print(f"\nsingle-ness, {len(procs)} collector(s), after {waited:.0f} s of settling"
              + (" (every point falls silent)" if args.silence_phase else ""))
        failed = loadfleet.singleness(url, receiver, sorted(tokens), plan, args.silence_phase, args.interval)
        after = [loadfleet.log_failures(path) for path in logs]
        print("collector log failures after settling: " + "; ".join(f"c{i} {dict(c) or 'none'}"
                                                                    for i, c in enumerate(after)))
        # A failed rescore or evaluation is work lost, if only until the next pass (a request's traceback,
        # e.g. an agent that timed out mid-body, is already among the request errors).
        if any(not name.startswith("traceback") for counts in after for name in counts):
            failed.append("collector background failures")
        errors = sum(len(st.errors) for st in stats)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        receiver.close()
        if dbname:
            import psycopg

            with psycopg.connect(args.pg_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        shutil.rmtree(tmp, ignore_errors=True)
    if failed:
        print(f"SINGLE-NESS FAILED: {len(failed)} check(s)")
    return 1 if errors or failed else 0


def report(args, stats: list[Stats], samples: list[list], elapsed: float, cpu: list[float],
           failures: list) -> None:
    lat = sorted(x[1] for st in stats for x in st.lat)
    n = len(lat)
    acked, written = sum(st.reports for st in stats), sum(st.written for st in stats)
    batches = [b for st in stats for b in st.batch_sizes]
    print(f"\nload benchmark: {args.agents} agents, 1 report of 20 results each per {args.interval:g} s, "
          f"{args.duration:g} s, store {args.store}, {len(stats)} collector(s), loopback, {os.cpu_count()} CPUs")
    print(f"requests {n}  errors {sum(len(st.errors) for st in stats)}  reports acknowledged {acked} of {written} "
          f"written ({sum(st.left_queued for st in stats)} still queued at the end)")
    print(f"throughput {acked / args.duration:.1f} reports/s (offered {args.agents / args.interval:.1f}/s), "
          f"{n / args.duration:.1f} requests/s, mean batch {statistics.mean(batches) if n else 0:.2f} "
          f"reports, {sum(st.bytes for st in stats) / n / 1024 if n else 0:.1f} KiB gzip per request")
    kinds: dict[str, int] = {}
    for _, text in (e for st in stats for e in st.errors):
        kinds[text[:80]] = kinds.get(text[:80], 0) + 1
    for text, count in sorted(kinds.items(), key=lambda kv: -kv[1])[:5]:
        print(f"  {count} x {text}")
    if n:
        print(f"request latency ms: p50 {1000 * statistics.median(lat):.1f}  p90 {1000 * pct(lat, 0.9):.1f}  "
              f"p99 {1000 * pct(lat, 0.99):.1f}  max {1000 * lat[-1]:.1f}")
    per_min = []
    for i in range(int(args.duration // 60)):
        m = sorted(x[1] for st in stats for x in st.lat if 60 * i <= x[0] < 60 * (i + 1))
        if m:
            per_min.append(f"{1000 * pct(m, 0.99):.0f}")
    print("p99 ms per minute: " + " ".join(per_min))
    for i, (st, own, c, fails) in enumerate(zip(stats, samples, cpu, failures, strict=True)):
        own_lat = sorted(x[1] for x in st.lat)
        rss = [kib / 1024 for _, kib, _ in own] or [0.0]
        print(f"collector c{i}: {st.reports} reports ({st.reports / args.duration:.1f}/s), errors {len(st.errors)}, "
              + (f"p50 {1000 * statistics.median(own_lat):.1f} ms p99 {1000 * pct(own_lat, 0.99):.1f} ms, "
                 if own_lat else "")
              + f"RSS first {rss[0]:.0f} last {rss[-1]:.0f} max {max(rss):.0f} MiB "
              f"(slope {slope_per_hour([(t, kib / 1024) for t, kib, _ in own]):+.0f} MiB/h, second half "
              f"{slope_per_hour([(t, kib / 1024) for t, kib, _ in own if t >= args.duration / 2]):+.0f}), "
              f"CPU {c:.0f} s ({100 * c / elapsed:.0f}% of one core), log failures {dict(fails) or 'none'}")
    loads = [x[2] for own in samples for x in own]
    if args.sqlite_db:
        print(f"SQLite WAL at most {stats[0].wal_mib_max:.0f} MiB (sampled every 5 s)")
    if args.pg:
        print(f"PostgreSQL connections to the store at most {stats[0].pg_connections_max} (sampled every 5 s)")
    if loads:
        print(f"collectors' CPU {sum(cpu):.0f} s in {elapsed:.0f} s ({100 * sum(cpu) / elapsed:.0f}% of one core); "
              f"machine load average during the run: mean {statistics.mean(loads):.2f}, max {max(loads):.2f}")


if __name__ == "__main__":
    sys.exit(main())
