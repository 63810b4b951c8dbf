"""Poll every recording of the shared SNMP manifest and compare the wall time with net-snmp.

For each recording our check fetches what it needs (printers: system group, hrDevice/hrPrinter,
prtMarkerSupplies and prtAlert tables; network gear: the system group) and net-snmp fetches the same with
``snmpget`` (system group) plus one ``snmpbulkwalk`` per table (``-Cr25``, as our GETBULKs). Both talk to
the same snmpsim on loopback, so the simulator's speed is common to both; net-snmp's figure includes
starting its processes, which is what a script built on it would pay too.

Prints, over several rounds, the median wall time of: ours sequentially, ours with all devices at once
(as the agent runs them), and net-snmp sequentially; and the ratios against net-snmp.

    .venv/bin/python benchmarks/snmp_poll.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.checks.devices import printermib as pm  # noqa: E402
from agent.checks.devices import snmp  # noqa: E402

DATA = REPO.parent / "shared/testdata/snmp"
TABLE_ROOTS = {"hr_device": "1.3.6.1.2.1.25.3.2.1", "hr_printer": "1.3.6.1.2.1.25.3.5.1",
               "supplies": "1.3.6.1.2.1.43.11.1.1", "alerts": "1.3.6.1.2.1.43.18.1.1"}


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_snmpsim(work: Path) -> tuple[subprocess.Popen, int]:
    exe = shutil.which("snmpsim-command-responder") or str(Path(sys.executable).parent / "snmpsim-command-responder")
    port = free_udp_port()
    env = dict(os.environ)
    if os.geteuid() == 0:
        env["SNMPSIM_ALLOW_ROOT"] = "true"  # a throwaway loopback simulator for this benchmark only
    proc = subprocess.Popen([exe, f"--data-dir={DATA}", f"--cache-dir={work}",
                             f"--agent-udpv4-endpoint=127.0.0.1:{port}", "--log-level=error"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    end = time.monotonic() + 90
    while time.monotonic() < end:
        if snmp.poll(snmp.SnmpConfig("127.0.0.1", port, community="xerox"), 0.5, 1).answered:
            return proc, port
    proc.kill()
    raise SystemExit("snmpsim did not start")


def ours(entry: dict, port: int) -> int:
    cfg = snmp.SnmpConfig("127.0.0.1", port, community=entry["community"], printer_mib=entry["kind"] == "printer")
    res = snmp.poll(cfg, 2.0, budget=20)
    assert res.answered, (entry["file"], res.error)
    return len(res.system) + sum(len(t) for t in res.tables.values())


def netsnmp(entry: dict, port: int) -> int:
    target = f"127.0.0.1:{port}"
    base = ["-v2c", "-c", entry["community"], "-On", "-t", "2", "-r", "1"]
    rows = 0
    out = subprocess.run(["snmpget", *base, target, *pm.SYSTEM_OIDS], capture_output=True, text=True)
    rows += out.stdout.count("\n.1.3.6") + (1 if out.stdout.startswith(".1.3.6") else 0)
    if entry["kind"] == "printer":
        for root in TABLE_ROOTS.values():
            out = subprocess.run(["snmpbulkwalk", *base, "-Cr25", target, root], capture_output=True, text=True)
            rows += sum(1 for line in out.stdout.splitlines() if line.startswith(".1.3.6"))
    return rows


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    for tool in ("snmpget", "snmpbulkwalk"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} missing: apt-get install snmp")
    manifest = json.loads((DATA / "manifest.json").read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as work:
        proc, port = start_snmpsim(Path(work))
        try:
            # Warm-up (snmpsim indexes lazily; pysnmp loads its MIB objects once per process).
            counts = {e["file"]: (ours(e, port), netsnmp(e, port)) for e in manifest}
            seq, conc, base = [], [], []
            for _ in range(args.rounds):
                seq.append(timed(lambda: [ours(e, port) for e in manifest]))
                with ThreadPoolExecutor(max_workers=len(manifest)) as pool:
                    conc.append(timed(lambda pool=pool: list(pool.map(lambda e: ours(e, port), manifest))))
                base.append(timed(lambda: [netsnmp(e, port) for e in manifest]))
        finally:
            proc.terminate()
            proc.wait(10)
    print(f"recordings: {len(manifest)} ({sum(e['kind'] == 'printer' for e in manifest)} printers), "
          f"rounds: {args.rounds}")
    print(f"{'recording':28} {'rows ours':>9} {'rows net-snmp':>13}")
    for name, (a, b) in counts.items():
        print(f"{name:28} {a:9d} {b:13d}")
    ms = lambda xs: statistics.median(xs) * 1000  # noqa: E731
    print(f"net-snmp snmpget+snmpbulkwalk, sequential: median {ms(base):8.1f} ms")
    print(f"pointwatch snmp.poll, sequential:           median {ms(seq):8.1f} ms  ratio {ms(seq) / ms(base):.2f}x")
    print(f"pointwatch snmp.poll, all devices at once:  median {ms(conc):8.1f} ms  ratio {ms(conc) / ms(base):.2f}x")


if __name__ == "__main__":
    main()
