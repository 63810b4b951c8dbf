"""The send loop: outbox → collector, in order, batched, with capped exponential backoff and jitter.

A report leaves the outbox when the collector answered 2xx for the batch that held it, or refused that
report alone with a 4xx other than 401/403 (logged with its id: it would never be taken). A re-send after a
crash is harmless: the collector counts a ``report_id`` once.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time

from agent import transport
from agent.outbox import Batch, Outbox
from agent.wire import rfc3339, utcnow

log = logging.getLogger("pointwatch.sender")

BATCH_LIMIT = 50          # reports per request
BATCH_FRESH = 5           # newest reports that ride along with every backlog batch
BATCH_MAX_BYTES = 1_000_000
# Pause between backlog batches: 50 reports / 5 s per agent keeps 500 points coming back from a
# county-wide outage far below what the collector ingests, and drains 7 days of backlog in ~25 minutes.
DRAIN_PAUSE = 5.0
BACKOFF_BASE = 2.0
BACKOFF_MAX = 300.0
IDLE_WAIT = 60.0          # nothing to send: look again this often (new reports wake the loop earlier)


def backoff_delay(failures: int, base: float = BACKOFF_BASE, cap: float = BACKOFF_MAX) -> float:
    """Exponential backoff with "equal jitter": never zero, so 500 agents don't retry in lockstep."""
    ceiling = min(cap, base * (2 ** max(0, failures - 1)))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class Sender(threading.Thread):
    def __init__(self, outbox: Outbox, url: str | None, token_reader, agent_id_reader, timeout: float,
                 ssl_ctx=None, speedup: float = 1.0, on_ack=None):
        super().__init__(name="sender", daemon=True)
        self.on_ack = on_ack  # (batch) after the collector acknowledged it: the upgrade trial's commit
        self.outbox, self.url, self.timeout, self.ssl_ctx = outbox, url, timeout, ssl_ctx
        self.token_reader, self.agent_id_reader = token_reader, agent_id_reader
        self.speedup = speedup
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.failures = 0
        self.last_error: str | None = None
        self._error_on_disk = True  # a previous run may have left one in the outbox's status
        self.pacing = False  # the last batch was part of a backlog: the pause after it is not cut short

    def run(self) -> None:
        delay = 0.0
        while not self.stopping.is_set():
            if delay > 0:
                # A new report pokes the loop awake, but must not cut a drain pause short: with reports
                # written every few seconds that pause would never elapse, and the backlog after an outage
                # would go out as fast as the collector answers instead of at the bounded pace.
                (self.stopping if self.pacing else self.wake).wait(delay)
                self.wake.clear()
                if self.stopping.is_set():
                    break
            delay = self.send_once()

    def poke(self) -> None:
        """A new report is in the outbox: send now, unless we are backing off from a failing collector."""
        if self.failures == 0 and self.last_error is None:
            self.wake.set()

    def send_once(self, timeout: float | None = None) -> float:
        """One attempt; returns how long to wait before the next."""
        self.pacing = False
        batch = self.outbox.batch(BATCH_LIMIT, BATCH_FRESH, BATCH_MAX_BYTES)
        if not batch:
            return IDLE_WAIT / self.speedup
        token = self.token_reader()
        if not self.url or not token:
            self._failed("尚未注册：缺少采集端地址或令牌，请运行 pointwatch-agent enroll", "not_enrolled")
            return BACKOFF_MAX / self.speedup
        try:
            answer = transport.send_reports(self.url, token, self._payload(batch), timeout or self.timeout,
                                            self.ssl_ctx)
        except transport.SendError as exc:
            return self._send_error(exc, batch)
        self.outbox.ack(batch, answer)
        if self.on_ack:
            self.on_ack(batch)
        if self.failures:
            log.info("collector_reachable_again after_failures=%d", self.failures)
        self.failures, self.last_error = 0, None
        if self._error_on_disk:  # cleared once, not rewritten (and synced) after every send
            self.outbox.note(last_error="", last_error_at="")
            self._error_on_disk = False
        log.info("reports_sent count=%d accepted=%s duplicates=%s backlog=%s", len(batch),
                 answer.get("accepted"), answer.get("duplicates"), batch.backlog)
        self.pacing = batch.backlog
        return DRAIN_PAUSE / self.speedup if batch.backlog else 0.0

    def _payload(self, batch: Batch) -> list[dict]:
        sent_at, agent_id = rfc3339(utcnow()), self.agent_id_reader()
        reports = []
        for body in batch.bodies:
            report = json.loads(body)
            report["sent_at"] = sent_at
            if agent_id:  # reports queued before enrolment carry the id the collector gave us
                report["agent_id"] = agent_id
            reports.append(report)
        return reports

    def _send_error(self, exc: transport.SendError, batch: Batch) -> float:
        if exc.status in (401, 403):
            # Token revoked or wrong point: keep every report, retry slowly; the IT person must re-enrol.
            self._failed(f"采集端拒绝令牌（HTTP {exc.status}），请重新注册", str(exc))
            return BACKOFF_MAX / self.speedup
        if exc.retry or exc.status is None:
            self.failures += 1
            delay = backoff_delay(self.failures, BACKOFF_BASE / self.speedup, BACKOFF_MAX / self.speedup)
            self._failed(f"无法发送报告：{exc}", str(exc), delay)
            return delay
        # 4xx for the batch as a whole: send the reports one by one so a single bad report cannot block
        # the rest forever; a report the collector rejects alone is removed and logged with its id.
        # The collector answered: an earlier run of failures is over (the next one backs off from 2 s again,
        # and stop() makes its last attempt).
        self.failures = 0
        if len(batch) > 1:
            for one in _singles(batch):
                try:
                    answer = transport.send_reports(self.url, self.token_reader(), self._payload(one),
                                                    self.timeout, self.ssl_ctx)
                    self.outbox.ack(one, answer)
                except transport.SendError as single_exc:
                    if single_exc.retry or single_exc.status in (401, 403, None):
                        return self._send_error(single_exc, one)
                    self._reject(one, single_exc)
            return 0.0
        self._reject(batch, exc)
        return 0.0

    def _reject(self, batch: Batch, exc: transport.SendError) -> None:
        report_id = json.loads(batch.bodies[0]).get("report_id")
        log.error("report_rejected report_id=%s status=%s error=%s", report_id, exc.status, exc)
        self.outbox.ack(batch, {"rejected": report_id, "status": exc.status})
        self._failed(f"采集端拒收报告 {report_id}（HTTP {exc.status}）", str(exc))

    def _failed(self, message: str, log_text: str, delay: float | None = None) -> None:
        if self.last_error != message:  # one line when it starts failing, not one per retry
            log.warning("send_failed error=%s next_try_s=%s", log_text, None if delay is None else round(delay, 1))
        self.last_error = message
        self._error_on_disk = True
        self.outbox.note(last_error=message, last_error_at=time.time())

    def stop(self, flush_timeout: float = 3.0) -> None:
        """Stop the loop; one last quick attempt if the collector was answering."""
        self.stopping.set()
        self.wake.set()
        self.join(timeout=self.timeout + 1)
        if self.failures == 0 and not self.is_alive():
            try:
                self.send_once(timeout=flush_timeout)
            except Exception as exc:  # shutting down: never let a last send block or crash the stop
                log.warning("final_send_failed error=%r", exc)


def _singles(batch: Batch) -> list[Batch]:
    out = []
    i = 0
    for row_id in batch.db_ids:
        out.append(Batch(db_ids=[row_id], bodies=[batch.bodies[i]]))
        i += 1
    for mseq in batch.mem_seqs:
        out.append(Batch(mem_seqs=[mseq], bodies=[batch.bodies[i]]))
        i += 1
    return out
