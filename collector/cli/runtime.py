"""Process-wide tuning of the collector's interpreter, applied by ``serve`` before the app starts its threads.

- GIL hand-off: the event loop thread gives up the GIL on every poll and must win it back from the score
  keeper, the alert evaluator and the ingest threads. At Python's default 5 ms switch interval it waits
  behind them long enough for requests to queue past the admission limit and be refused; 1 ms keeps the
  loop answering under load.
- glibc malloc arenas: each of the ~50 threads may get its own arena (up to 8 per CPU), and memory freed in
  one is not reused by another, so RSS keeps rising while Python's own heap stays flat. Two arenas, and the
  heap trimmed once a minute, keep RSS level after warm-up.

The load runs that set both: benchmarks/README.md, History.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

SWITCH_INTERVAL_S = 0.001
MALLOC_ARENAS = 2
TRIM_EVERY_S = 60.0
_M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)

log = logging.getLogger("pointwatch.runtime")


def tune() -> None:
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    if sys.platform.startswith("linux") and limit_malloc_arenas(MALLOC_ARENAS):
        threading.Thread(target=_trim_heap_forever, name="pw-heap-trim", daemon=True).start()


def _trim_heap_forever(every_s: float = TRIM_EVERY_S) -> None:
    import ctypes
    import ctypes.util

    trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    while True:
        time.sleep(every_s)
        trim(0)


def limit_malloc_arenas(n: int) -> bool:
    """mallopt(M_ARENA_MAX, n) on glibc; False (and nothing changed) on another C library (musl, macOS)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    if mallopt(_M_ARENA_MAX, n) != 1:  # mallopt answers 1 on success
        log.warning("malloc_arena_limit_refused arenas=%d", n)
        return False
    return True
