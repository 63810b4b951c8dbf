"""A failure that repeats is logged once with its traceback, then counted, not logged every round.

The WAL checkpointer runs every second: with the disk full or the store read-only it logged a traceback a
second. ``Repeats`` logs the first failure in full, then one line with the count every ``summary_s``
(default five minutes) while it lasts, and one line when the job works again.
"""

from __future__ import annotations

import logging
import time


class Repeats:
    def __init__(self, log: logging.Logger, event: str, summary_s: float = 300.0, clock=time.monotonic):
        self.log, self.event, self.summary_s, self.clock = log, event, summary_s, clock
        self.count = 0
        self._last_said = 0.0
        self._what = ""

    def failed(self, exc: BaseException) -> None:
        what = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"
        self.count += 1
        now = self.clock()
        if self.count == 1 or what != self._what:
            self.log.error("%s error=%s", self.event, what, exc_info=exc)  # the first: in full
            self._what, self._last_said = what, now
        elif now - self._last_said >= self.summary_s:
            self.log.error("%s repeated=%d error=%s", self.event, self.count, what)
            self._last_said = now

    def succeeded(self) -> None:
        if self.count:
            self.log.warning("%s recovered after=%d failures", self.event, self.count)
        self.count, self._what = 0, ""
