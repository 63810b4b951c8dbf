"""Brute force on the login form is slowed: failure counters per username and per source address.

After 5 failures for one username within an hour, or 20 from one source address within 15 minutes, every
further attempt is refused without the password being checked, for a lock that starts at 30 s and doubles
with each further failure up to 15 minutes; a successful login clears the username's count. The right
password during a lock is refused too (else the lock would only slow the attacker's guesses down, not stop
them being confirmed). Unknown usernames are counted like real ones, so a lock reveals nothing.

The counters live in the collector process (no table, no migration, no database round trip per guess);
with N collectors behind a balancer an attacker gets N times the attempts, and a restart forgets them.
Every attempt, refused or not, is in the audit log either way.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


class LoginLocked(Exception):
    """Too many failed logins for this username or from this address: refused without a password check."""

    def __init__(self, retry_after_s: float):
        super().__init__(f"locked for {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    locked_until: float = 0.0


class LoginThrottle:
    """Failure counters per username and per source address, with an exponentially growing lock."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.user_free, self.source_free = 5, 20  # failures allowed before the first lock
        self.user_window_s, self.source_window_s = 3600.0, 900.0  # a quiet spell this long forgets them
        self.base_s, self.max_s = 30.0, 900.0  # first lock, doubling per further failure, capped
        self.max_entries = 100_000  # an attacker inventing names or addresses cannot grow it without bound
        self._users: dict[str, _Failures] = {}
        self._sources: dict[str, _Failures] = {}
        self._lock = threading.Lock()

    def _entry(self, table: dict, key: str, window: float, now: float) -> _Failures | None:
        entry = table.get(key)
        if entry is not None and now - entry.last > window and now >= entry.locked_until:
            del table[key]
            return None
        return entry

    def retry_after(self, username: str, source: str | None) -> float:
        now = self.clock()
        with self._lock:
            waits = [0.0]
            for table, key, window, _ in self._keys(username, source):
                entry = self._entry(table, key, window, now)
                if entry is not None:
                    waits.append(entry.locked_until - now)
            return max(waits)

    def failed(self, username: str, source: str | None) -> tuple[int, float]:
        """Count a failure; returns (failures for this username, seconds it is now locked for)."""
        now = self.clock()
        count, lock = 0, 0.0
        with self._lock:
            for table, key, window, free in self._keys(username, source):
                entry = self._entry(table, key, window, now)
                if entry is None:
                    if len(table) >= self.max_entries:
                        self._prune(table, window, now)
                    entry = table[key] = _Failures()
                entry.count += 1
                entry.last = now
                if entry.count >= free:
                    wait = min(self.base_s * 2 ** min(entry.count - free, 30), self.max_s)
                    entry.locked_until = now + wait
                    lock = max(lock, wait)
                if table is self._users:
                    count = entry.count
        return count, lock

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._users.pop(username, None)

    def _keys(self, username: str, source: str | None):
        yield self._users, username, self.user_window_s, self.user_free
        if source:
            yield self._sources, source, self.source_window_s, self.source_free

    def _prune(self, table: dict, window: float, now: float) -> None:
        for key in [k for k, e in table.items() if now - e.last > window and now >= e.locked_until]:
            del table[key]
        while len(table) >= self.max_entries:  # still full of live entries: forget the oldest
            del table[min(table, key=lambda k: table[k].last)]


def login_throttle(store) -> LoginThrottle:
    throttle = getattr(store, "_login_throttle", None)
    if throttle is None:
        throttle = store._login_throttle = LoginThrottle()
    return throttle
