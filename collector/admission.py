"""Admission of ingest requests: refuse early (503 + Retry-After) only when this process cannot answer in time.

A fixed cap on requests in flight was the first bound (benchmarks/load.py, 2,000 agents every 10 s): at 64 it
refused thousands of requests an hour from a collector that was keeping up, because a burst of arrivals or a
scoring pass holding the interpreter for a moment briefly puts more than 64 requests in the queue, each of
them answered within a second. What must never happen is the other failure: a queue so long that requests
are answered after the agents' 10 s timeout, stored, and sent again.

So the bound is on *waiting*, as CoDel bounds a router's queue: when even the fastest request finished
during the last ``window_s`` took longer than ``max_delay_s``, there is a standing queue (not a burst) and
new requests are refused until a window shows fast answers again. A hard cap on requests in flight stays as
the bound on memory (each holds its body) and for a store that stopped answering (no request finishes, so
no window ever shows the delay).

Collector config::

    ingest:
      max_in_flight: 512     # hard cap per collector process
      max_delay_s: 2.0       # the fastest answer of a window slower than this: refuse new requests
      window_s: 1.0
"""

from __future__ import annotations

import time
from dataclasses import dataclass

DEFAULTS = {"max_in_flight": 512, "max_delay_s": 2.0, "window_s": 1.0}


class AdmissionConfigError(ValueError):
    pass


@dataclass
class Admission:
    max_in_flight: int = DEFAULTS["max_in_flight"]
    max_delay_s: float = DEFAULTS["max_delay_s"]
    window_s: float = DEFAULTS["window_s"]
    clock: object = time.monotonic

    def __post_init__(self):
        self.in_flight = 0
        self.overloaded = False
        self._window_end = self.clock() + self.window_s
        self._window_min: float | None = None

    @classmethod
    def from_config(cls, section, where: str = "ingest") -> Admission:
        """Validated ``ingest:`` section of the collector config (None = defaults)."""
        if section is None:
            return cls()
        if not isinstance(section, dict):
            raise AdmissionConfigError(f"{where}: expected a mapping, got {type(section).__name__}")
        unknown = sorted(set(section) - set(DEFAULTS))
        if unknown:
            raise AdmissionConfigError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(DEFAULTS)})")
        values = {}
        for key, default in DEFAULTS.items():
            value = section.get(key, default)
            kind = int if isinstance(default, int) else (int, float)
            if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
                raise AdmissionConfigError(f"{where}.{key}: expected a positive number, got {value!r}")
            values[key] = value
        return cls(**values)

    def refuse_reason(self) -> str | None:
        """Why a request arriving now must be refused ("busy", "queue_delay"), or None to take it."""
        self._roll_window()
        if self.in_flight >= self.max_in_flight:
            return "busy"
        if self.overloaded:
            return "queue_delay"
        return None

    def enter(self) -> None:
        self.in_flight += 1

    def leave(self, took_s: float) -> None:
        self.in_flight -= 1
        self._roll_window()
        if self._window_min is None or took_s < self._window_min:
            self._window_min = took_s

    def _roll_window(self) -> None:
        now = self.clock()
        if now < self._window_end:
            return
        # A window in which nothing finished says nothing about the queue: keep the last verdict while
        # requests are still waiting, clear it once the queue is empty.
        if self._window_min is not None:
            self.overloaded = self._window_min > self.max_delay_s
        elif self.in_flight == 0:
            self.overloaded = False
        self._window_min = None
        self._window_end = now + self.window_s
