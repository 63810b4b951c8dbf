"""Roll-ups and pruning on a timer: every collector wakes up, one of them (under a database lock) does the work."""

from __future__ import annotations

import logging
import threading

from collector.store import retention
from collector.store.retention import RetentionPolicy

log = logging.getLogger("pointwatch.collector")

FIRST_ROUND_AFTER_S = 5.0
AT_MOST_EVERY_S = 300.0  # a collector that missed the lock looks again this soon


class Maintenance:
    def __init__(self, store, policy: RetentionPolicy):
        self.store, self.policy = store, policy
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="pw-maintenance", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        wait = min(FIRST_ROUND_AFTER_S, self.policy.interval_s)
        while not self._stop.wait(wait):
            try:
                summary = retention.run_maintenance(self.store, self.policy)
                if summary:
                    log.info("maintenance %s", summary)
            except Exception:  # a failed round is retried next time; it must not end the loop
                log.exception("maintenance failed")
            wait = min(self.policy.interval_s, AT_MOST_EVERY_S)
