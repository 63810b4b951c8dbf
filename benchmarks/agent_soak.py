"""Agent soak: a simulated month of the standard config against a real collector; RSS slope, second half.

    python benchmarks/agent_soak.py [--days 30] [--speedup 1440] [--max-minutes 60] [--sample 5] [--no-snmp]

The agent runs as `pointwatch-agent run` with the standard config of benchmarks/agent_footprint.py (10
core-network ICMP targets, 4 network devices, 2 SNMP printers served by snmpsim from
../shared/testdata/snmp/ when it is there, every target on loopback) at the standard intervals (network
60 s, devices and 专网专机专用 5 min, identity 1 h), all divided by POINTWATCH_AGENT_TEST_SPEEDUP=--speedup.
It reports to a real collector started from this repository (`pointwatch-collector serve`, SQLite, its
point and agent token made with the collector's CLI), so every report goes the whole way: outbox, gzip,
HTTP, ingest, acknowledgement.

Time is counted in the agent's own cycles, not wall seconds: a job that runs longer than its sped-up
interval (or whose outbox commit waits for a busy disk) is coalesced by the scheduler, so the script counts
`job_done` lines per job and runs until the network job has done --days × 1,440 cycles, or --max-minutes
have passed; it prints the simulated days the cycles done make. RSS is sampled every --sample seconds;
printed per simulated day, and at the end the least-squares slope over the second half of the samples,
per 1,000 network cycles and as MiB per real month at 60 s (43,200 network cycles). Flat = no growth.

Baseline: none beside it; the figure is judged against zero (a slope within sampling noise), and the
first-half slope is printed too (warm-up growth that levels off shows there and not in the second half).
Loopback only; the collector, agent and snmpsim stop at the end and their temporary directory goes.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from agent_footprint import (  # noqa: E402  (beside this script)
    DEVICES,
    SNMP_DATA,
    STANDARD_INTERVALS,
    agent_config,
    free_port,
    start_snmpsim,
)

REPO = Path(__file__).resolve().parents[1]
CODE = "620102001001"
NETWORK_PER_DAY = 86400 / STANDARD_INTERVALS["network"]
JOB_DONE = re.compile(r"job_done job=(\w+) ")


def start_collector(work: Path) -> tuple[subprocess.Popen, str, str]:
    cli = str(Path(sys.executable).with_name("pointwatch-collector"))
    base_args = [cli, "--data-dir", str(work / "collector")]
    env = {k: v for k, v in os.environ.items() if k != "POINTWATCH_DATABASE_URL"}
    subprocess.run([*base_args, "points", "add", "--code", CODE, "--name", "基准测试点",
                    "--region", "甘肃省/兰州市/城关区/某镇/某村"], check=True, env=env, capture_output=True)
    token = subprocess.run([*base_args, "tokens", "create", "--role", "agent", "--point", CODE], check=True,
                           env=env, capture_output=True, text=True).stdout.strip()
    port = free_port()
    log = open(work / "collector.log", "wb")  # noqa: SIM115 (lives as long as the process)
    proc = subprocess.Popen([*base_args, "serve", "--port", str(port)], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(base + "/healthz", timeout=1)
            return proc, base, token
        except OSError:
            time.sleep(0.2)
    proc.kill()
    sys.exit("collector did not start: " + (work / "collector.log").read_text(errors="replace")[-2000:])


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=30, help="simulated days of the standard schedule")
    ap.add_argument("--speedup", type=float, default=1440, help="every interval divided by this")
    ap.add_argument("--max-minutes", type=float, default=60, help="stop here even if the days are not done")
    ap.add_argument("--sample", type=float, default=5, help="seconds between RSS samples")
    ap.add_argument("--no-snmp", action="store_true", help="leave the two SNMP printers out")
    args = ap.parse_args()
    use_snmp = not args.no_snmp and SNMP_DATA.is_dir()
    with tempfile.TemporaryDirectory(prefix="pw-soak-") as tmp:
        work = Path(tmp)
        collector, base, token = start_collector(work)
        sim = None
        listeners = []
        try:
            import socket

            for _ in DEVICES:
                s = socket.socket()
                s.bind(("127.0.0.1", 0))
                s.listen(64)
                listeners.append(s)
            snmp_port = 9
            if use_snmp:
                sim, snmp_port = start_snmpsim(work)
            cfg = agent_config(work, int(base.rsplit(":", 1)[1]), snmp_port,
                               [s.getsockname()[1] for s in listeners], STANDARD_INTERVALS)
            if not use_snmp:  # drop the printer lines
                cfg.write_text("\n".join(line for line in cfg.read_text(encoding="utf-8").splitlines()
                                         if "snmp:" not in line) + "\n", encoding="utf-8")
            (work / "state" / "token").write_text(token)
            code = soak(args, cfg, use_snmp)
            if collector.poll() is not None:
                print(f"the collector exited during the soak ({collector.returncode}): "
                      + (work / "collector.log").read_text(errors="replace")[-1500:])
                code = 1
            return code
        finally:
            for s in listeners:
                s.close()
            if sim:
                sim.terminate()
                sim.wait(10)
            collector.terminate()
            collector.wait(30)


def soak(args, cfg: Path, use_snmp: bool) -> int:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "POINTWATCH_AGENT_TEST_SPEEDUP": f"{args.speedup:g}"}
    agent = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", str(cfg)], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace")
    counts: dict[str, int] = {}
    errors: list[str] = []

    def read_log():
        for line in agent.stderr:
            m = JOB_DONE.search(line)
            if m:
                counts[m.group(1)] = counts.get(m.group(1), 0) + 1
            elif " ERROR " in line or "Traceback" in line or "send_failed" in line:
                errors.append(line.strip())

    threading.Thread(target=read_log, daemon=True).start()
    proc = psutil.Process(agent.pid)
    target, wall = args.days * NETWORK_PER_DAY, args.max_minutes * 60
    print(f"soak: {args.days:g} simulated days ({target:.0f} network cycles) at speedup {args.speedup:g}, at most "
          f"{args.max_minutes:g} min; "
          f"SNMP printers {'on' if use_snmp else 'off'}; load average {os.getloadavg()[0]:.1f}", flush=True)
    samples: list[tuple[float, float, float]] = []  # (wall s, network cycles, RSS MiB)
    t0 = time.monotonic()
    next_day = 1
    cpu0 = sum(proc.cpu_times()[:2])
    try:
        while time.monotonic() - t0 < wall and counts.get("network", 0) < target:
            time.sleep(args.sample)
            if agent.poll() is not None:
                sys.exit(f"agent exited with {agent.returncode}: {errors[-3:]}")
            rss = proc.memory_info().rss / 2**20
            samples.append((time.monotonic() - t0, counts.get("network", 0), rss))
            day = samples[-1][1] / NETWORK_PER_DAY
            if day >= next_day:
                print(f"  simulated day {day:5.1f}: RSS {rss:6.1f} MiB, cycles {dict(sorted(counts.items()))}",
                      flush=True)
                next_day = int(day) + 1
        cpu = sum(proc.cpu_times()[:2]) - cpu0
    finally:
        agent.terminate()
        agent.wait(60)
    half = samples[len(samples) // 2:]
    first = samples[:len(samples) // 2]
    per_k = lambda pts: slope([(c, r) for _, c, r in pts]) * 1000 * 1024  # noqa: E731  KiB per 1,000 cycles
    net = counts.get("network", 0)
    print(f"cycles: {dict(sorted(counts.items()))} = {net / NETWORK_PER_DAY:.1f} simulated days of network cycles "
          f"in {samples[-1][0] / 60:.1f} min; agent CPU {cpu:.0f} s; log errors {len(errors)} {errors[:2]}")
    print(f"RSS MiB: first sample {samples[0][2]:.1f}, at half time {half[0][2]:.1f}, last {samples[-1][2]:.1f}, "
          f"max {max(r for _, _, r in samples):.1f}")
    s2 = per_k(half)
    print(f"slope, first half: {per_k(first):+.1f} KiB per 1,000 network cycles")
    print(f"slope, second half: {s2:+.1f} KiB per 1,000 network cycles "
          f"= {s2 * 43.2 / 1024:+.2f} MiB per month at 60 s; load average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
