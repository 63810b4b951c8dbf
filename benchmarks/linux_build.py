"""The self-contained Linux agent's size and start time beside the agent run from the project's venv.

    python benchmarks/linux_build.py [--repeat 7]

Builds dist/linux-<arch>/pointwatch-agent if needed (tests/linux/build.py, cached; the time of a build that
ran is printed), then times `--version` and `check --json` of the binary and of
`.venv/bin/python -m agent.cli` (the baseline) alternately, --repeat times each, with one config (one TCP
target on a loopback server this script runs, usage staff list) so `check` is the same work on both sides.
Prints medians and the ratio binary/baseline. A one-file PyInstaller binary unpacks itself into /tmp on
every start, which is most of its extra start time.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=300)
    took = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.decode('utf-8', 'replace')[-2000:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from tests.linux.build import build

    t0 = time.perf_counter()
    binary = build()
    built_s = time.perf_counter() - t0
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    threading.Thread(target=lambda: [c.close() for c, _ in iter(srv.accept, None)], daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "agent.yaml"
        cfg.write_text(f"""
point: {{code: "620102001001", name: 基准}}
collector: {{url: "http://127.0.0.1:9", timeout: 2s}}
state_dir: {tmp}/state
core_network: {{timeout: 2s, tcp: [{{target: "127.0.0.1:{srv.getsockname()[1]}", name: 平台}}]}}
usage: {{staff_accounts: [operator]}}
""", encoding="utf-8")
        sides = {"binary": [str(binary)], "baseline": [str(REPO / ".venv" / "bin" / "python"), "-m", "agent.cli"]}
        runs: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.repeat):
            for side, cmd in sides.items():
                runs.setdefault((side, "--version"), []).append(timed([*cmd, "--version"]))
                runs.setdefault((side, "check"), []).append(timed([*cmd, "check", "--json", "--config", str(cfg)]))
    print(f"binary: {binary} {binary.stat().st_size / 1e6:.1f} MB (build step took {built_s:.1f} s this run)")
    for what in ("--version", "check"):
        b, base = (statistics.median(runs[(s, what)]) for s in ("binary", "baseline"))
        print(f"{what:>9}: binary {b:.2f} s, baseline {base:.2f} s, ratio {b / base:.2f}")


if __name__ == "__main__":
    main()
