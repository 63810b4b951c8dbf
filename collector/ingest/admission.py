"""Admission of ingest requests: refuse (503 + Retry-After) only what this process cannot answer in time.

Two failures to avoid (benchmarks/load.py, 2,000 agents every 10 s). A queue without bound: requests were
answered after the agents' 10 s timeout, stored, and sent again, so the collector spent its time on work
nobody waited for. And a bound too tight: a fixed cap of 64 requests in flight refused thousands of
requests an hour from a collector that was keeping up, because a burst of arrivals briefly queues more than
64, each answered within a second. (A global "overloaded" switch, refusing everything while answers were
slow, was tried too: refusal and the agents' retries fed each other and it oscillated.)

So each request is judged on its own age: one that waited longer than ``max_wait_s`` for a thread to store
it is refused before any store work (its sender is close to giving up; the agent retries it later), and
every other request is served however many there are. A hard cap on requests in flight stays as the bound
on memory (each holds its body) and for a store that stopped answering.

Collector config::

    ingest:
      max_in_flight: 512    # per collector process; beyond it: 503 at once, before authentication
      max_wait_s: 5.0       # a request not yet being stored after this long: 503 (agents time out at 10 s)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

DEFAULTS = {"max_in_flight": 512, "max_wait_s": 5.0}


class AdmissionConfigError(ValueError):
    pass


@dataclass
class Admission:
    max_in_flight: int = DEFAULTS["max_in_flight"]
    max_wait_s: float = DEFAULTS["max_wait_s"]
    clock: object = time.monotonic

    def __post_init__(self):
        self.in_flight = 0

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

    def arrive(self) -> float | None:
        """A request arrives: its arrival time if taken (call ``leave`` when done), None if refused (busy)."""
        if self.in_flight >= self.max_in_flight:
            return None
        self.in_flight += 1
        return self.clock()

    def leave(self) -> None:
        self.in_flight -= 1

    def too_late(self, arrived: float) -> bool:
        """Called where the store work would start: has this request waited too long to be worth it?"""
        return self.clock() - arrived > self.max_wait_s
