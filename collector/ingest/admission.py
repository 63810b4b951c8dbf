"""Admission of ingest requests: refuse (503 + Retry-After) only what this process cannot answer in time.

Each request is judged on its own age. One that waited longer than ``max_wait_s`` for a thread to store it
is refused before any store work: its sender is near its 10 s timeout and would send it again anyway, so
storing it now is work nobody waits for (the agent retries a refusal later). Every other request is
served however many there are, because a burst of arrivals briefly queues many requests that are each
answered within a second; a fixed cap sized for steady load would refuse those. There is no global
"overloaded" switch: refusing everything while answers are slow feeds on the agents' retries and
oscillates. A hard cap on requests in flight stays as the bound on memory (each holds its body) and for a
store that stopped answering. (The load runs behind these choices: benchmarks/README.md, History.)

Collector config::

    ingest:
      max_in_flight: 512    # per collector process; beyond it: 503 at once, before authentication
      max_wait_s: 5.0       # a request not yet being stored after this long: 503 (agents time out at 10 s)
      heartbeat_s: 300      # the store's: a results row per key at least this often (0: every sample a row)

``heartbeat_s`` is not admission's but the report writer's (collector/store/ingest.py, the news test of
collector/ingest/changes.py); it is read and checked here with the rest of the section.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from collector.ingest.changes import HEARTBEAT_S_DEFAULT

DEFAULTS = {"max_in_flight": 512, "max_wait_s": 5.0, "heartbeat_s": HEARTBEAT_S_DEFAULT}
MAY_BE_ZERO = frozenset({"heartbeat_s"})


class AdmissionConfigError(ValueError):
    pass


@dataclass
class Admission:
    max_in_flight: int = DEFAULTS["max_in_flight"]
    max_wait_s: float = DEFAULTS["max_wait_s"]
    heartbeat_s: float = DEFAULTS["heartbeat_s"]
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
            if key in MAY_BE_ZERO:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                        value >= 0 and math.isfinite(value)):
                    raise AdmissionConfigError(f"{where}.{key}: expected a number of seconds, 0 or more "
                                               f"(0: every sample is stored), got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
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
