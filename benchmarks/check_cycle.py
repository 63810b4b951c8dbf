"""A check cycle with 10 unreachable targets at a 1 s timeout: concurrent runner vs one after another.

Builds a namespace whose 10.10.9.0/24 is routed to a host that drops it (see tests/netns.py), then
re-runs itself inside that namespace and times, with the same probe objects:
  - the cycle as the agent runs it (agent.checks.run_probes: concurrent), and
  - the baseline: each probe's run() one after another.
Prints both wall times and baseline/concurrent as a ratio. Needs root and iproute2.

    sudo .venv/bin/python benchmarks/check_cycle.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGETS = [f"10.10.9.{i}" for i in range(1, 11)]  # black-holed: nobody answers, every probe waits its timeout
TIMEOUT = 1.0


def cycle_probes():
    from agent.checks import Probe
    from agent.checks.network import icmp_echoes, tcp_connect

    probes = []
    for i, host in enumerate(TARGETS):
        if i % 2:  # half ICMP (3 echoes each), half TCP: the two core-network probe kinds
            probes.append(Probe("net.core.icmp", host, lambda h=host: icmp_echoes(h, 3, TIMEOUT), deadline=TIMEOUT + 2))
        else:
            probes.append(Probe("net.core.tcp", f"{host}:443", lambda h=host: tcp_connect(h, 443, TIMEOUT),
                                deadline=TIMEOUT + 1))
    return probes


def inside(rounds: int) -> None:
    from agent.checks import run_probes

    concurrent, baseline = [], []
    for r in range(rounds):
        t0 = time.perf_counter()
        results = run_probes(cycle_probes())
        concurrent.append(time.perf_counter() - t0)
        assert all(x.status == "fail" for x in results), [x.message for x in results if x.status != "fail"]
        t0 = time.perf_counter()
        for p in cycle_probes():
            p.run()
        baseline.append(time.perf_counter() - t0)
        print(f"round {r + 1}: concurrent {concurrent[-1]:.2f} s, one after another {baseline[-1]:.2f} s, "
              f"ratio {baseline[-1] / concurrent[-1]:.1f}x", flush=True)
    c, b = statistics.median(concurrent), statistics.median(baseline)
    print(f"median over {rounds} rounds, {len(TARGETS)} unreachable targets at {TIMEOUT:g} s timeout: "
          f"concurrent cycle {c:.2f} s, sequential baseline {b:.2f} s, ratio {b / c:.1f}x "
          f"(cycle = {c / TIMEOUT:.2f} timeouts)")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inside:
        inside(args.rounds)
        return 0
    from tests.netns import Topology

    with Topology("b") as topo:
        return subprocess.run(topo.exec_args(topo.agent, sys.executable, __file__, "--inside", "--rounds",
                                             str(args.rounds)), cwd=REPO).returncode


if __name__ == "__main__":
    sys.exit(main())
