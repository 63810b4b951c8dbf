"""Agent footprint beside the Prometheus exporter stack doing the same probes at the same rate.

    python benchmarks/agent_footprint.py [--span 180] [--warmup 30] [--speedup 12 | --interval 5] [--repeat 3]

Rates: by default the standard config's intervals (network 60 s, devices 5 m, compliance 5 m, identity 1 h)
divided by --speedup (12: network every 5 s, devices and 专网专机专用 every 25 s, identity every 5 min),
and the stack probes the core targets and the devices at those same two rates. --interval N instead runs
every agent job, and every stack probe, each N seconds (the 专网专机专用 and identity checks, which the
stack has no counterpart for, then run 5 and 60 times as often as in the standard config).

Standard config: 10 core-network ICMP targets, 4 network devices (ICMP + TCP), 2 SNMP printers served by
snmpsim from ../shared/testdata/snmp/, every target on loopback. The agent runs as `pointwatch-agent run`
and reports to a small HTTP sink in this script. The baseline is Debian's prometheus-node-exporter +
prometheus-blackbox-exporter + prometheus-snmp-exporter on loopback ports, with a scrape loop driven by
this script at the same rates (10 icmp + 4 tcp + 4 icmp probes through blackbox, 2 printer walks
through snmp_exporter, one node_exporter scrape). The scraper and the sink are not counted, on either side.

Prints steady RSS (median after the warm-up) and CPU seconds per hour for both, and their ratios.
Needs root (ICMP raw sockets for blackbox), the three Debian packages and snmpsim (dev extra).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
SNMP_DATA = REPO.parent / "shared" / "testdata" / "snmp"
PRINTERS = ("jetdirect_m252dw", "brother_hl5370dw")
ICMP_TARGETS = [f"127.0.0.{i}" for i in range(1, 11)]
DEVICES = [(f"127.0.1.{i}", port) for i, port in enumerate((0, 0, 0, 0), start=1)]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"accepted":1,"duplicates":0}'
        self.send_response(202)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def start_snmpsim(work: Path) -> tuple[subprocess.Popen, int]:
    exe = shutil.which("snmpsim-command-responder") or str(Path(sys.executable).parent / "snmpsim-command-responder")
    data = work / "snmp"
    data.mkdir()
    for name in PRINTERS:
        shutil.copy(SNMP_DATA / f"{name}.snmprec", data)
    port = free_port()
    env = {**os.environ, "SNMPSIM_ALLOW_ROOT": "true"}
    proc = subprocess.Popen([exe, f"--data-dir={data}", f"--cache-dir={work / 'cache'}",
                             f"--agent-udpv4-endpoint=127.0.0.1:{port}", "--log-level=error"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(5)
    return proc, port


STANDARD_INTERVALS = {"network": 60, "devices": 300, "compliance": 300, "identity": 3600}


def rates(args) -> dict[str, float]:
    if args.interval:
        return {job: float(args.interval) for job in STANDARD_INTERVALS}
    return {job: s / args.speedup for job, s in STANDARD_INTERVALS.items()}


def agent_config(work: Path, sink_port: int, snmp_port: int, dev_ports: list[int], intervals: dict) -> Path:
    icmp = "\n".join(f"    - {{target: {t}, name: 核心网目标{i}}}" for i, t in enumerate(ICMP_TARGETS, 1))
    devs = "\n".join(f"  - {{kind: kiosk, name: 设备{i}, icmp: 127.0.1.{i}, tcp: {p}}}"
                     for i, p in enumerate(dev_ports, 1))
    printers = "\n".join(f"  - {{kind: printer, name: 打印机{i}, snmp: {{host: 127.0.0.1, port: {snmp_port}, "
                         f"community: {c}}}}}" for i, c in enumerate(PRINTERS, 1))
    path = work / "agent.yaml"
    path.write_text(f"""
point: {{code: "620102001001", name: 基准测试点}}
collector: {{url: "http://127.0.0.1:{sink_port}", timeout: 5s}}
state_dir: {work / 'state'}
intervals: {{{", ".join(f"{job}: {secs:g}s" for job, secs in intervals.items())}}}
core_network:
  timeout: 1s
  count: 1
  icmp:
{icmp}
isolation:
  internet_canaries: [{{target: "127.0.0.1:9"}}]
devices:
{devs}
{printers}
""", encoding="utf-8")
    (work / "state").mkdir()
    (work / "state" / "token").write_text("benchmark")
    return path


def exporter_configs(work: Path, snmp_port: int) -> tuple[Path, Path]:
    bb = work / "blackbox.yml"
    bb.write_text("modules:\n  icmp:\n    prober: icmp\n    timeout: 1s\n    icmp: {preferred_ip_protocol: ip4}\n"
                  "  tcp:\n    prober: tcp\n    timeout: 1s\n")
    walk = ["1.3.6.1.2.1.43.11.1.1", "1.3.6.1.2.1.25.3.2.1.5", "1.3.6.1.2.1.25.3.5.1.2"]
    metrics = [("prtMarkerSuppliesLevel", "1.3.6.1.2.1.43.11.1.1.9"),
               ("prtMarkerSuppliesMaxCapacity", "1.3.6.1.2.1.43.11.1.1.8"),
               ("hrDeviceStatus", "1.3.6.1.2.1.25.3.2.1.5")]
    # snmp_exporter < 0.23 (Debian 12 ships 0.21) takes the modules at the top level; newer ones under
    # "modules:". A config the exporter refuses makes it exit at once, and the stack would then be measured
    # without it, so the version decides the layout.
    legacy = _snmp_exporter_version() < (0, 23)
    lines, pad = ([], "") if legacy else (["modules:"], "  ")
    for c in PRINTERS:
        lines += [f"{pad}{c}:", f"{pad}  version: 2", f"{pad}  auth: {{community: {c}}}", f"{pad}  walk:"]
        lines += [f"{pad}  - {w}" for w in walk]
        lines += [f"{pad}  metrics:"]
        for name, oid in metrics:
            # Printer-MIB's supplies table is indexed by hrDeviceIndex and prtMarkerSuppliesIndex.
            idx = ["hrDeviceIndex"] + ([] if name.startswith("hr") else ["prtMarkerSuppliesIndex"])
            lines += [f"{pad}  - name: {name}", f"{pad}    oid: {oid}", f"{pad}    type: gauge",
                      f"{pad}    indexes: [{', '.join(f'{{labelname: {i}, type: gauge}}' for i in idx)}]"]
    snmp = work / "snmp.yml"
    snmp.write_text("\n".join(lines) + "\n")
    return bb, snmp


def _snmp_exporter_version() -> tuple[int, ...]:
    import re

    out = subprocess.run(["prometheus-snmp-exporter", "--version"], capture_output=True, text=True)
    m = re.search(r"version (\d+)\.(\d+)", out.stdout + out.stderr)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def sample(procs: list[psutil.Process]) -> tuple[float, float]:
    rss = cpu = 0.0
    for p in procs:
        rss += p.memory_info().rss
        t = p.cpu_times()
        cpu += t.user + t.system
    return rss, cpu


def measure(procs: list[psutil.Process], warmup: float, span: float) -> dict:
    time.sleep(warmup)
    _, cpu0 = sample(procs)
    t0 = time.monotonic()
    rss = []
    while time.monotonic() - t0 < span:
        time.sleep(2)
        rss.append(sample(procs)[0])
    _, cpu1 = sample(procs)
    elapsed = time.monotonic() - t0
    return {"rss_mb": statistics.median(rss) / 2**20, "cpu_s_per_h": (cpu1 - cpu0) / elapsed * 3600}


def breakdown(pid: int) -> dict[str, float]:
    """Resident MiB of a process by mapping, from /proc/PID/smaps: the anonymous memory (Python's heap:
    pymalloc arenas, malloc arenas, thread stacks), and each mapped file grouped by library."""
    groups: dict[str, float] = {}
    name = ""
    with open(f"/proc/{pid}/smaps", encoding="utf-8", errors="replace") as f:
        for line in f:
            head = line.split(None, 5)
            if "-" in head[0] and not head[0].endswith(":"):
                path = head[5].strip() if len(head) > 5 else ""
                name = ("anonymous (Python and C heaps, thread stacks)" if not path or path == "[heap]"
                        else path if path.startswith("[") else _library(path))
            elif head[0] == "Rss:":
                groups[name] = groups.get(name, 0.0) + int(head[1]) / 1024
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        threads = next(int(line.split()[1]) for line in f if line.startswith("Threads:"))
    groups[f"threads: {threads}"] = 0.0
    return groups


def _library(path: str) -> str:
    """site-packages/<package>/… -> the package; lib-dynload and libpython -> the interpreter; else the file."""
    parts = Path(path).parts
    if "site-packages" in parts:
        return "package " + parts[parts.index("site-packages") + 1].split(".")[0]
    if "lib-dynload" in parts or Path(path).name.startswith("libpython"):
        return "CPython (libpython, stdlib extension modules)"
    return Path(path).name.split(".so")[0] if ".so" in Path(path).name else "other files (locale, …)"


def run_agent(cfg: Path, warmup: float, span: float, show_breakdown: bool = False) -> dict:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", str(cfg)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        out = measure([psutil.Process(proc.pid)], warmup, span)
        if show_breakdown:
            print("agent RSS by mapping at the end of the span (MiB):")
            for name, mib in sorted(breakdown(proc.pid).items(), key=lambda kv: -kv[1]):
                if mib >= 0.2 or name.startswith("threads"):
                    print(f"  {mib:6.1f}  {name}")
        return out
    finally:
        proc.terminate()
        proc.wait(30)


def run_stack(work: Path, snmp_port: int, dev_ports: list[int], intervals: dict, warmup: float, span: float,
              with_devices: bool) -> dict:
    bb_cfg, snmp_cfg = exporter_configs(work, snmp_port)
    ports = {name: free_port() for name in ("node", "blackbox", "snmp")}
    cmds = [["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{ports['node']}"],
            ["prometheus-blackbox-exporter", f"--config.file={bb_cfg}", f"--web.listen-address=127.0.0.1:{ports['blackbox']}"],
            ["prometheus-snmp-exporter", f"--config.file={snmp_cfg}", f"--web.listen-address=127.0.0.1:{ports['snmp']}"]]
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for c in cmds]
    time.sleep(2)
    dead = [c[0] for c, p in zip(cmds, procs, strict=True) if p.poll() is not None]
    if dead:
        for p in procs:
            p.kill()
        sys.exit(f"exporter(s) exited at start (config refused?): {', '.join(dead)}")
    urls = [f"http://127.0.0.1:{ports['blackbox']}/probe?module=icmp&target={t}" for t in ICMP_TARGETS]
    urls.append(f"http://127.0.0.1:{ports['node']}/metrics")
    dev_urls: list[str] = []
    for i, p in enumerate(dev_ports if with_devices else [], 1):
        dev_urls += [f"http://127.0.0.1:{ports['blackbox']}/probe?module=icmp&target=127.0.1.{i}",
                 f"http://127.0.0.1:{ports['blackbox']}/probe?module=tcp&target=127.0.0.1:{p}"]
    dev_urls += [f"http://127.0.0.1:{ports['snmp']}/snmp?module={c}&target=127.0.0.1:{snmp_port}"
                 for c in (PRINTERS if with_devices else ())]
    stop = threading.Event()
    failures = []

    def scrape(url):
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = r.read()
            if b"probe_success 0" in body or ("snmp?" in url and b"prtMarkerSuppliesLevel" not in body):
                failures.append(url)
        except OSError as exc:
            failures.append(f"{url}: {exc}")

    def loop(group: list[str], interval: float):
        with ThreadPoolExecutor(8) as pool:
            while not stop.is_set():
                t = time.monotonic()
                list(pool.map(scrape, group))
                stop.wait(max(0.0, interval - (time.monotonic() - t)))

    # node_exporter stands for host.resources and goes with the core probes; devices at the devices' rate.
    threading.Thread(target=loop, args=(urls, intervals["network"]), daemon=True).start()
    if dev_urls:
        threading.Thread(target=loop, args=(dev_urls, intervals["devices"]), daemon=True).start()
    try:
        out = measure([psutil.Process(p.pid) for p in procs], warmup, span)
        out["scrape_failures"] = len(failures)
        out["failed_examples"] = sorted(set(failures))[:3]
        return out
    finally:
        stop.set()
        for p in procs:
            p.terminate()
            p.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--span", type=float, default=180, help="measured seconds per side")
    ap.add_argument("--warmup", type=float, default=30)
    ap.add_argument("--speedup", type=float, default=12, help="standard intervals divided by this (default 12)")
    ap.add_argument("--interval", type=float, default=0, help="instead: every job and probe each N s (≥ 5)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="measure the agent this many times (median printed); the stack once")
    ap.add_argument("--agent-only", action="store_true", help="skip the exporter stack (no ratios)")
    ap.add_argument("--breakdown", action="store_true",
                    help="print the agent's RSS by mapping (/proc/PID/smaps) at the end of each run")
    args = ap.parse_args()
    for tool in ("prometheus-node-exporter", "prometheus-blackbox-exporter", "prometheus-snmp-exporter"):
        if not shutil.which(tool):
            sys.exit(f"missing {tool}: apt-get install {tool}")
    with tempfile.TemporaryDirectory(prefix="pw-footprint-") as tmp:
        work = Path(tmp)
        sink = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
        threading.Thread(target=sink.serve_forever, daemon=True).start()
        listeners = []
        for _ in DEVICES:  # the network devices' TCP service, on loopback
            import socket

            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen(64)
            listeners.append(s)
        dev_ports = [s.getsockname()[1] for s in listeners]
        sim, snmp_port = start_snmpsim(work)
        try:
            cfg = agent_config(work, sink.server_address[1], snmp_port, dev_ports, rates(args))
            per_job = probe_counts(cfg)
            runs = []
            for i in range(max(1, args.repeat)):
                if i:  # a fresh state directory each time: every run starts like the first
                    shutil.rmtree(work / "state")
                    cfg = agent_config(work, sink.server_address[1], snmp_port, dev_ports, rates(args))
                runs.append(run_agent(cfg, args.warmup, args.span, args.breakdown))
                print(f"agent run {i + 1}: RSS {runs[-1]['rss_mb']:.1f} MB, CPU {runs[-1]['cpu_s_per_h']:.1f} s/h, "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
            agent = {k: statistics.median(r[k] for r in runs) for k in ("rss_mb", "cpu_s_per_h")}
            # The baseline does what the agent does: device probes only once the agent has them.
            stack = None if args.agent_only else run_stack(
                work, snmp_port, dev_ports, rates(args), args.warmup, args.span,
                with_devices=bool(per_job.get("devices")))
        finally:
            sim.terminate()
            sim.wait(10)
    print(f"intervals {', '.join(f'{j} {v:g}s' for j, v in rates(args).items())}; measured {args.span:.0f}s after {args.warmup:.0f}s warm-up"
          f" ({len(runs)} agent run(s), medians), load average now {os.getloadavg()[0]:.1f}")
    print(f"agent probes per cycle by job: {per_job}"
          + ("  (no device probes yet: the devices family is not merged; network targets only)"
             if not per_job.get("devices") else ""))
    print(f"{'':34}{'RSS MB':>10}{'CPU s/h':>12}")
    print(f"{'pointwatch-agent':34}{agent['rss_mb']:>10.1f}{agent['cpu_s_per_h']:>12.1f}")
    if stack is None:
        return 0
    print(f"{'node+blackbox+snmp exporters':34}{stack['rss_mb']:>10.1f}{stack['cpu_s_per_h']:>12.1f}"
          f"   (scrape failures: {stack['scrape_failures']} {stack['failed_examples']})")
    print(f"ratio agent/stack: RSS {agent['rss_mb'] / stack['rss_mb']:.2f}, CPU {agent['cpu_s_per_h'] / max(stack['cpu_s_per_h'], 1e-9):.2f}")
    print(f"aim: RSS < 45 MB ({'met' if agent['rss_mb'] < 45 else 'NOT met'}), "
          f"CPU/h <= stack ({'met' if agent['cpu_s_per_h'] <= stack['cpu_s_per_h'] else 'NOT met'})")
    return 0


def probe_counts(cfg: Path) -> dict:
    from agent.checks import registry
    from agent.config import load
    from agent.platform import current
    from agent.report import probes_for

    config = load(cfg)
    return {job: len(probes_for(config, current(), jobs=[job])) for job in registry.JOBS}


if __name__ == "__main__":
    sys.exit(main())
