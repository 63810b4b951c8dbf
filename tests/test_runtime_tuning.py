"""collector/cli/runtime.py: the interpreter tuning `serve` applies (its docstring says why)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_serve_tuning_takes_effect_in_a_fresh_process():
    # In a child: the switch interval is process-wide and the arena limit cannot be undone.
    code = ("import sys; from collector.cli import runtime; "
            "ok = runtime.limit_malloc_arenas(2); runtime.tune(); "
            "print(ok, sys.getswitchinterval())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True,
                         cwd=REPO)
    ok, interval = out.stdout.split()
    assert ok == "True"  # glibc on these machines: mallopt(M_ARENA_MAX) accepted
    assert float(interval) == 0.001
