"""glibc's allocator, told to give memory back: a fixed mmap threshold and a trim after the work.

The agent's big allocations are short-lived (a report's JSON, zlib's deflate state for the gzip of every
send, SQLite's pages for a batch), and glibc by default (a) raises its mmap threshold to the size of the
largest block freed so far, after which such blocks come from the heap instead of their own mapping, and
(b) keeps free memory inside the heap unless it sits at the very top. Over thousands of cycles the free
holes added up: the soak benchmark (benchmarks/agent_soak.py) saw RSS rise about 1 MiB per simulated day,
of which ``malloc_trim`` handed back 3.7 MiB at once. So the threshold is pinned (blocks of 128 KiB and
more get a mapping of their own and leave with it), and :func:`trim` runs after the agent's work.

On anything but glibc (Windows, musl) there is nothing to do and both functions return False.
"""

from __future__ import annotations

import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value, kept instead of left to grow

_libc = None


def _glibc():
    global _libc
    if _libc is None:
        _libc = False
        if sys.platform.startswith("linux"):
            import ctypes
            import ctypes.util

            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt"):
                    _libc = libc
            except OSError:
                pass
    return _libc


def pin_thresholds() -> bool:
    """Fix the mmap threshold (and the trim threshold beside it) so glibc stops adjusting them."""
    libc = _glibc()
    if not libc:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD))


def trim() -> bool:
    """Return the free pages of every arena to the OS (``malloc_trim(0)``); True when some were."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc else False
