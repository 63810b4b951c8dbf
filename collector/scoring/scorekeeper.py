"""Keeps every point's "now" score (point_scores) and its /metrics lines (metric_lines) current.

Ingest announces the codes of points that reported (``points_changed``, after the commit, so ingest never
waits); a thread scores them in batches. Every minute it also rescores points that went silent since their last score,
because silence takes points away (stale results no longer count in ``score_now``) and no report arrives
to say so.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from functools import lru_cache

from agent.vocabulary import SILENCE_INTERVALS_DEFAULT
from collector.scoring import Observation, max_age_for, score_now
from collector.scoring.profiles import level_of
from collector.scoring.scores import ScoreError, evidence_of, profile_for
from collector.scoring.slots import seconds_of, timestamp_of
from collector.store import metriclines, pointscores

log = logging.getLogger("pointwatch.scores")

BATCH = 500
SHEETS_KEPT = 4096  # distinct (profile, level, interval, counted results) sheets remembered
TICK_S = 60.0
MIN_PASS_S = 2.0  # while busy, at most one pass per this long


def rescore(store, codes: list[str], now: datetime | None = None,
            silence_intervals: int = SILENCE_INTERVALS_DEFAULT) -> int:
    """Score these points now, save the sheets and render their /metrics lines; returns points scored."""
    from collector.metrics.render import TextWriter, point_lines

    now = now or datetime.now(timezone.utc)
    saved = 0
    writer = TextWriter()
    for i in range(0, len(codes), BATCH):
        chunk = codes[i:i + BATCH]
        inputs = pointscores.score_inputs(store, chunk)
        latest_rows: dict[str, list] = {}
        line_rows, trusted_rows = metriclines.lines_and_evidence(store, chunk)
        for row in line_rows:
            latest_rows.setdefault(row[0], []).append(row[1:7])
        # What scores: only results checked against an issued policy (scores.counted), unlike the metrics.
        observations = evidence_of(trusted_rows)
        rows, lines = [], {}
        for code in chunk:
            if code not in inputs:
                continue
            profile_name, interval, _region = inputs[code]
            try:
                profile_for(profile_name)
            except ScoreError as exc:
                log.warning("score_skipped point=%s reason=%s", code, exc)
                continue
            earned, automatic, items = now_score(profile_name, observations.get(code, []), now, interval,
                                                 silence_intervals * interval, level_of(inputs[code][2]))
            rows.append({"point_code": code, "profile": profile_name, "earned": earned,
                         "automatic_points": automatic, "scored_at": now, "items": items})
            region = inputs[code][2]
            lines[code] = (region, point_lines(code, region, profile_name, sorted(latest_rows.get(code, ())),
                                               (earned, sorted(items.items())), writer))
        pointscores.save_scores(store, rows)
        metriclines.save_metric_lines(store, lines)
        saved += len(rows)
    return saved


def now_score(profile_name: str, observations: list, now: datetime, interval: float,
              silent_after: float, level: str) -> tuple[float, float, dict[str, bool]]:
    """(earned, automatic points, {item: met}) of score_now's sheet for these observations at ``now``.

    A point that reports again mostly reports the same statuses: its sheet is the one it had. score_now
    depends on the times only through which results have lapsed (older than their max_age) and whether
    the point is silent; with those applied here, what is left (the results that count, in their order)
    decides the sheet, and equal ones are scored once (``_sheet_of``). Two results of one (check, target)
    leave the choice to their times: scored directly."""
    iv, t_now = seconds_of(interval), timestamp_of(now)
    seen: dict[tuple[str, str], tuple[float, str]] = {}
    for at, check, target, status, kind in observations:
        if kind and check == "device":
            check = f"device.{kind}"
        if (check, target) in seen:
            return _summary(score_now(profile_for(profile_name), observations, now=now, interval=interval,
                                      silent_after=silent_after, level=level))
        seen[(check, target)] = (timestamp_of(at), status)
    if seen and t_now - max(t for t, _ in seen.values()) > seconds_of(silent_after):
        seen = {}  # silent: nothing counts
    counted = tuple((check, target, status) for (check, target), (t, status) in seen.items()
                    if not t_now - t > max_age_for(check, iv, None))
    earned, automatic, items = _sheet_of(profile_name, level, iv, counted)
    return earned, automatic, dict(items)


@lru_cache(maxsize=SHEETS_KEPT)
def _sheet_of(profile_name: str, level: str, interval: float, counted: tuple) -> tuple[float, float, tuple]:
    sheet = score_now(profile_for(profile_name), [Observation(0.0, c, t, s) for c, t, s in counted],
                      interval=interval, level=level)
    earned, automatic, items = _summary(sheet)
    return earned, automatic, tuple(items.items())


def _summary(sheet) -> tuple[float, float, dict[str, bool]]:
    # Only what the monitor scores: the reviewer's items and those not applicable have no verdict here.
    items = {it.id: it.state == "met" for it in sheet.items if it.state in ("met", "not_met")}
    return sheet.earned, sheet.automatic_points, items


class ScoreKeeper:
    def __init__(self, store, tick_s: float = TICK_S, silence_intervals: int = SILENCE_INTERVALS_DEFAULT):
        self.store, self.tick_s, self.silence_intervals = store, tick_s, silence_intervals
        self._pending: set[str] = set()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def points_changed(self, codes) -> None:
        with self._cond:
            self._pending.update(codes)
            self._cond.notify()

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="pw-scores", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        import time

        next_tick = 0.0  # the first pass scores every point that has no score yet
        busy, started, took = False, 0.0, 0.0
        while not self._stop.is_set():
            with self._cond:
                if not self._pending and time.monotonic() < next_tick:
                    self._cond.wait(timeout=max(0.0, next_tick - time.monotonic()))
                codes, self._pending = sorted(self._pending), set()
            try:
                if time.monotonic() >= next_tick:
                    codes = sorted(set(codes) | set(pointscores.points_needing_scores(self.store))
                                   | set(metriclines.points_with_stale_lines(self.store)))
                    next_tick = time.monotonic() + self.tick_s
                if codes and busy:
                    # Reports came in during the last pass: under load, one pass over what reported meanwhile
                    # rather than one per report keeps the CPU for ingest (a quiet collector scores at once).
                    self._stop.wait(max(0.0, started + max(MIN_PASS_S, 2 * took) - time.monotonic()))
                    with self._cond:
                        codes, self._pending = sorted(set(codes) | self._pending), set()
                if codes:
                    started = time.monotonic()
                    rescore(self.store, codes, silence_intervals=self.silence_intervals)
                    took = time.monotonic() - started
                    with self._cond:
                        busy = bool(self._pending)
            except Exception:  # the next report or tick tries again; metrics keep the last scores meanwhile
                log.exception("rescore_failed points=%d", len(codes))
                self._stop.wait(5)

