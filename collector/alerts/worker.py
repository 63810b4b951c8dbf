"""The background half: ingest only announces point codes (they land in a set); two threads do the rest.

- the evaluator takes the set, evaluates each point, and runs the timer (silence, for-durations, mutes
  that ended) every ``alerts.tick``;
- the dispatcher claims queued notifications and hands them to a small pool of senders, so one slow or
  dead robot delays neither ingest nor the other notifiers.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from collector.alerts.dispatch import claim, deliver, queue_depth
from collector.metrics import selfmetrics

log = logging.getLogger("pointwatch.alerts")
MIN_PASS_S = 1.0  # while busy, at most one evaluation a second of a point, however often it reports


class AlertWorker:
    def __init__(self, engine, send_threads: int = 4):
        self.engine = engine
        self.send_threads = send_threads
        self._pending: set[str] = set()
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._inflight = 0
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._pool: ThreadPoolExecutor | None = None
        engine.on_enqueued = self._wake.set
        engine.on_backlog = lambda code: self.points_changed([code])

    # called after the batch committed, on the request's thread (collector/ingest/pipeline.py): must not block
    def points_changed(self, codes) -> None:
        with self._cond:
            self._pending.update(codes)
            selfmetrics.ALERT_EVAL_BACKLOG.set(len(self._pending))
            self._cond.notify()

    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()
        self._pool = ThreadPoolExecutor(self.send_threads, thread_name_prefix="pw-notify")
        for target, name in ((self._evaluate_loop, "pw-alert-eval"), (self._dispatch_loop, "pw-alert-dispatch")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._wake.set()
        for t in self._threads:
            t.join(timeout)
        self._threads = []
        if self._pool:
            self._pool.shutdown(wait=True, cancel_futures=False)
            self._pool = None

    def _evaluate_loop(self) -> None:
        next_tick = time.monotonic()
        busy, started, took = False, 0.0, 0.0
        while not self._stop.is_set():
            with self._cond:
                if not self._pending:
                    self._cond.wait(timeout=max(0.0, next_tick - time.monotonic()))
                codes, self._pending = self._pending, set()
                selfmetrics.ALERT_EVAL_BACKLOG.set(0)
            if codes and busy:
                # Reports came in during the last pass: a busy collector gets many per point a second, and
                # evaluating after each one would take the CPU ingest needs. Gather them for a while and
                # evaluate each point once (a quiet collector evaluates a report at once).
                self._stop.wait(max(0.0, started + max(MIN_PASS_S, 2 * took) - time.monotonic()))
                with self._cond:
                    codes, self._pending = codes | self._pending, set()
            if codes:
                started = time.monotonic()
                self._evaluate(self._screen(sorted(codes)))
                took = time.monotonic() - started
                with self._cond:
                    busy = bool(self._pending)
            if time.monotonic() >= next_tick and not self._stop.is_set():
                self._run("timer", self.engine.tick)
                next_tick = time.monotonic() + self.engine.config.tick_s

    def _screen(self, codes: list[str]) -> list[str]:
        try:
            due = self.engine.worth_evaluating(codes)
        except Exception:  # the database may be away for a moment: evaluate one by one (each may fail alone)
            log.exception("alert_screening_failed points=%d", len(codes))
            return codes
        selfmetrics.ALERT_EVALUATIONS.labels("ingest", "nothing_to_do").inc(len(codes) - len(due))
        return due

    def _evaluate(self, codes: list[str]) -> None:
        failed = []

        def failure(code, exc):  # one point's failure; the others of its batch are judged one by one
            failed.append(code)
            selfmetrics.ALERT_EVALUATIONS.labels("ingest", "error").inc()
            log.error("alert_evaluation_failed trigger=ingest args=('%s',)", code, exc_info=exc)

        try:
            self.engine.evaluate_points(codes, on_error=failure)
        except Exception:  # not a point's evaluation: the screening's caller retries with the next report
            log.exception("alert_evaluation_failed trigger=ingest points=%d", len(codes))
            return
        selfmetrics.ALERT_EVALUATIONS.labels("ingest", "ok").inc(len(codes) - len(failed))

    def _run(self, trigger: str, fn, *args) -> None:
        try:
            fn(*args)
            selfmetrics.ALERT_EVALUATIONS.labels(trigger, "ok").inc()
        except Exception:  # the database may be away for a moment; the timer and next report retry
            selfmetrics.ALERT_EVALUATIONS.labels(trigger, "error").inc()
            log.exception("alert_evaluation_failed trigger=%s args=%s", trigger, args)

    def _dispatch_loop(self) -> None:
        while not self._stop.is_set():
            jobs = []
            self._wake.clear()  # before claiming: a wake-up during the claim is not lost
            try:
                with self._lock:
                    room = self.send_threads * 2 - self._inflight
                if room > 0:
                    jobs = claim(self.engine, self.engine.clock(), limit=room)
                for job in jobs:
                    with self._lock:
                        self._inflight += 1
                    self._pool.submit(self._send, job)
                queue_depth(self.engine)
            except Exception:
                log.exception("notification_dispatch_failed")
            self._wake.wait(timeout=0.05 if jobs else 1.0)

    def _send(self, job) -> None:
        try:
            deliver(self.engine, job)
        except Exception:  # recording the outcome failed: the lease runs out and the row is sent again
            log.exception("notification_record_failed id=%s", job[0])
        finally:
            with self._lock:
                self._inflight -= 1
            self._wake.set()
