"""Alert state per point: pending → firing → resolved, muting, inhibition, and queuing notifications.

An evaluation runs in a transaction holding the point's ``point_state`` row lock (the same lock ingest
takes), so two collectors never evaluate one point at once and an alert is raised once; the points of one
pass share the transaction (up to EVAL_BATCH, locked together in code order) and its reads.
An evaluation first replays, in stored order, every result received since the point was last judged (its
watermark moves in the same transaction), so a fault that came and went between two evaluations is raised
too; then it judges the latest state. Evaluations are idempotent: each result is replayed once, and the
latest state moves streaks only on data newer than the alert last counted, so the timer, a duplicate batch
or a second collector re-evaluating changes nothing that has not changed.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from sqlalchemy.exc import IntegrityError

from collector.alerts import windows
from collector.alerts.config import AlertsConfig
from collector.alerts.messages import compose
from collector.alerts.notifiers import Notifier, build_notifier
from collector.alerts.rules import RESULT_RULES, Hit, Latest, PointView, result_hits, sample_hits, silent_hit
from collector.store import alerts as alert_rows
from collector.store.models import Alert

log = logging.getLogger("pointwatch.alerts")


def fingerprint(rule: str, point_code: str, check: str, target: str) -> str:
    return hashlib.sha256(f"{rule}\x1f{point_code}\x1f{check}\x1f{target}".encode()).hexdigest()


def aware(ts: datetime | None) -> datetime | None:
    return None if ts is None else (ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc))


SCREEN_BATCH = 500  # points per bulk look (well under SQLite's bound on query parameters)
SCREEN_REPORTS = 5  # a point with more reports than this since it was judged is evaluated, not screened
REPLAY_ROWS = 5000  # results replayed per evaluation at most: a day's backlog is judged over a few passes
EVAL_BATCH = 100  # points evaluated in one transaction (their rows locked together, in code order)
# A report beyond its point's watermark this long was an evaluation lost (a crash between the commit and the
# evaluation, a collector gone): the worker, even behind under load, judges within seconds, and a tick's
# wait made the timer judge again every point the busy worker had not reached yet.
LOST_EVALUATION_S = 60.0


def _view(code, name, region_path, interval, last_received_at, clock_skew_s, fingerprint_mismatch) -> PointView:
    return PointView(code, name, region_path, interval or 60, aware(last_received_at), clock_skew_s,
                     bool(fingerprint_mismatch))


def _latest(check, target, status, value, message, details, received_at) -> Latest:
    return Latest(check, target, status, value, message, details or {}, aware(received_at))


def _sample(row: tuple) -> tuple[datetime, Latest]:
    """A replayed REPLAY_COLUMNS row: (its time, the result). Its time is when the agent says it looked, but
    never later than the collector received it (a PC's clock set ahead must not stretch a fault)."""
    _, check, target, status, value, message, details, observed_at, received_at = row
    received = aware(received_at)
    at = min(aware(observed_at) or received, received)
    return at, Latest(check, target, status, value, message, details or {}, received)


def _later(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a


class _Facts:
    """What an evaluation's transaction reads of its points, after locking them: each table once for all of
    them (a statement per point and table cost more than the judging), the silences once if needed."""

    def __init__(self, s, codes: list[str], replay_rows: int, now: datetime):
        self.views, self.states = alert_rows.lock_points(s, codes)
        present = sorted(self.views)
        self.open_alerts = alert_rows.open_alerts_of(s, present) if present else {}
        self.replay = alert_rows.results_since_watermarks(s, present, replay_rows) if present else {}
        self.latest = alert_rows.latest_rows_of(s, present) if present else {}
        self._now, self._silences = now, None

    def silences(self, s) -> list:
        if self._silences is None:
            self._silences = alert_rows.active_silences(s, self._now)
        return self._silences


class AlertEngine:
    def __init__(self, store, config: AlertsConfig, public_url: str = "http://127.0.0.1:8000", clock=None):
        self.store = store
        self.config = config
        self.public_url = public_url
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.notifiers: dict[str, Notifier] = {n.name: build_notifier(n) for n in config.notifiers}
        self.on_enqueued = None  # set by the worker: wakes the dispatcher when messages are queued
        self.on_backlog = None  # set by the worker: a point whose history was not judged to its end in one go
        self.replay_rows = REPLAY_ROWS

    # -- evaluation ----------------------------------------------------------------------------------
    def evaluate_point(self, code: str) -> int:
        """Evaluate one point now; returns the number of notifications queued."""
        return self._evaluate_batch([code])

    def evaluate_points(self, codes: list[str], on_error=None) -> int:
        """Evaluate these points, EVAL_BATCH to a transaction whose reads are one statement per table for
        all of them; returns notifications queued. A batch that fails (another collector's new alert under
        us, the database away for a moment) is evaluated again point by point, so each point fails alone:
        ``on_error(code, exc)`` hears of those, or the first one is raised."""
        queued = 0
        for i in range(0, len(codes), EVAL_BATCH):
            chunk = codes[i:i + EVAL_BATCH]
            if len(chunk) > 1:
                try:
                    queued += self._evaluate_batch(chunk, attempts=1)
                    continue
                except Exception:
                    log.info("alert_batch_retried_alone points=%d", len(chunk))
            for code in chunk:
                try:
                    queued += self._evaluate_batch([code])
                except Exception as exc:
                    if on_error is None:
                        raise
                    on_error(code, exc)
        return queued

    def _evaluate_batch(self, codes: list[str], attempts: int = 3) -> int:
        for attempt in range(attempts):
            try:
                with self.store.session() as s:
                    now = self.clock()
                    facts = _Facts(s, codes, self.replay_rows, now)
                    outcome = {code: self._evaluate(s, code, facts, now) for code in codes if code in facts.views}
                break
            except IntegrityError:  # an open alert for this fingerprint appeared under us: look again
                if attempt == attempts - 1:
                    raise
        queued = sum(q for q, _ in outcome.values())
        if queued and self.on_enqueued:
            self.on_enqueued()
        for code, (_, caught_up) in outcome.items():
            if not caught_up and self.on_backlog:  # the rest of its history on the next pass
                self.on_backlog(code)
        return queued

    def worth_evaluating(self, codes: list[str]) -> list[str]:
        """The points among ``codes`` whose evaluation could change something: an open alert, a fault in
        their latest state now, or one in a result received since they were last judged (a violation that
        arrived with its recovery). Most points, most of the time, have none; judging them here in bulk,
        read without locks, spares each a transaction, and their watermark moves past the clean results in
        one bulk update. A report that changes a point after this look enqueues the point again, so
        nothing is missed, only evaluated on the next pass."""
        now, due = self.clock(), []
        rules = self.config.rules
        for i in range(0, len(codes), SCREEN_BATCH):
            chunk = codes[i:i + SCREEN_BATCH]
            opened_here, view_rows, latest_rows = alert_rows.screen(self.store, chunk)
            lag, unjudged = alert_rows.unjudged(self.store, chunk, SCREEN_REPORTS, set(opened_here))
            due.extend(opened_here)
            views = {row[0]: _view(*row) for row in view_rows}
            latest = {code: [_latest(*r) for r in rows] for code, rows in latest_rows.items()}
            opened, clean = set(due), []
            for code, view in views.items():
                if code in opened:
                    continue
                mark, n, newest = lag.get(code, (None, 0, None))
                if (n > SCREEN_REPORTS or self._hits(view, latest.get(code, []), now)
                        or sample_hits((_sample(r)[1] for r in unjudged.get(code, [])), rules)):
                    due.append(code)
                elif n:
                    clean.append((code, mark, newest))
            alert_rows.advance_evaluated_up_to(self.store, clean)
        return due

    def _hits(self, view: PointView, latest: list[Latest], now: datetime) -> dict[tuple, Hit]:
        rules = self.config.rules
        hits: dict[tuple, Hit] = {h.key: h for h in result_hits(view, latest, rules)}
        rc = rules["point_silent"]
        if rc.enabled:
            baseline = windows.silence_baseline(self.config.maintenance, view.code, view.region_path, now)
            hit = silent_hit(view, rc, now, baseline)
            if hit:
                hits[hit.key] = hit
        return hits

    def _evaluate(self, s, code: str, facts: _Facts, now: datetime) -> tuple[int, bool]:
        """One point's evaluation: (notifications queued, whether the point's history is judged to its end)."""
        view = _view(*facts.views[code])
        open_alerts = {(a.rule, a.check, a.target): a for a in facts.open_alerts[code]}
        resolved: list[Alert] = []
        rows = facts.replay[code]
        caught_up = len(rows) < self.replay_rows
        if not caught_up:  # the last report may be cut short: it is replayed whole next time (a report
            last = rows[-1][0]  # holds at most MAX_RESULTS_PER_REPORT, fewer than REPLAY_ROWS, results)
            rows = [r for r in rows if r[0] != last] or rows
        fired = self._replay(s, view, rows, open_alerts, resolved, now)
        if rows:
            alert_rows.set_evaluated_up_to(facts.states[code], rows[-1][0])
        if caught_up:  # the latest state (and time: silence, for-durations) only once history is judged
            self._judge_latest(s, view, facts.latest[code], open_alerts, resolved, now)
        # No flush here: the changes go at the commit, so the pass takes SQLite's write lock at its end
        # (or when a message needs an alert's id), not from its first point to its last.
        return self._notify(s, view, list(open_alerts.values()), resolved, fired, now, facts), caught_up

    def _replay(self, s, view: PointView, rows: list[tuple], open_alerts: dict, resolved: list,
                now: datetime) -> list[Alert]:
        """Feed each result received since the point was last judged, in the order it was stored, through
        the fault/clear steps: a fault that came and went between two evaluations (or within one batch of
        an agent's backlog) still raises and resolves its alert. Each row is replayed once (the watermark),
        so every row counts; the for-duration is judged by the rows' own time. Returns the alerts that fired."""
        rules, fired = self.config.rules, []
        for row in rows:
            at, sample = _sample(row)
            hits = {h.key: replace(h, since=at) for h in sample_hits([sample], rules)}
            cleared = [k for k in open_alerts if k[1:] == (sample.check, sample.target) and k[0] in RESULT_RULES
                       and k not in hits and k[0] in rules]
            for key, hit in hits.items():
                alert = open_alerts.get(key)
                was = alert.state if alert is not None else None
                alert = open_alerts[key] = self._observe_fault(s, alert, hit, view, now, at=at, fresh=True)
                if alert.state == "firing" and was != "firing":
                    fired.append(alert)
            for key in cleared:
                alert = open_alerts[key]
                outcome = self._observe_clear(s, alert, sample.received_at, now, fresh=True)
                if outcome != "open":
                    open_alerts.pop(key)
                    alert_rows.flush(s)  # the episode's open key is free before the next one may take it
                if outcome == "resolved":
                    resolved.append(alert)
        return fired

    def _judge_latest(self, s, view: PointView, latest_rows: list[tuple], open_alerts: dict, resolved: list,
                      now: datetime) -> None:
        """The point as it is now: its latest results, its state (identity, clock) and silence."""
        latest = [_latest(*r) for r in latest_rows]
        rules = self.config.rules
        hits = self._hits(view, latest, now)
        baseline = windows.silence_baseline(self.config.maintenance, view.code, view.region_path, now)
        data_time = {(r.check, r.target): r.received_at for r in latest}
        for key in set(hits) | set(open_alerts):
            rule = key[0]
            if rule not in rules:
                continue
            hit, alert = hits.get(key), open_alerts.get(key)
            if hit is not None:
                alert = self._observe_fault(s, alert, hit, view, now)
                open_alerts[key] = alert
            elif alert is not None:
                # The fault is not there now; only a newer look at the same data counts as a clean one.
                if rule == "point_silent":  # a report came, or a maintenance window restarted the count
                    seen = max(filter(None, (view.last_received_at, baseline)), default=None)
                elif rule in ("clock_skew", "identity_changed") and key[1:] not in data_time:
                    seen = view.last_received_at
                else:
                    seen = data_time.get(key[1:], view.last_received_at)
                outcome = self._observe_clear(s, alert, seen, now)
                if outcome != "open":
                    open_alerts.pop(key)
                if outcome == "resolved":
                    resolved.append(alert)

    def _observe_fault(self, s, alert: Alert | None, hit: Hit, view: PointView, now: datetime,
                       at: datetime | None = None, fresh: bool = False) -> Alert:
        """``at``: until when the fault is known to have lasted (a replayed row's time; now for the current
        state). ``fresh``: a replayed row, counted whatever its time; otherwise only data newer than what
        the alert last counted is a new observation."""
        rc = self.config.rules[hit.rule]
        if alert is None:
            fp = fingerprint(hit.rule, view.code, hit.check, hit.target)
            alert = alert_rows.add_alert(
                s, fingerprint=fp, open_key=fp, rule=hit.rule, point_code=view.code, region_path=view.region_path,
                check=hit.check, target=hit.target, severity=rc.severity, state="pending", summary=hit.summary,
                value=hit.value, pending_since=hit.since or hit.observed, observed_at=hit.observed,
                fail_streak=1, ok_streak=0, updated_at=now)
        elif fresh or hit.observed > aware(alert.observed_at):
            alert.fail_streak, alert.ok_streak = alert.fail_streak + 1, 0
            alert.observed_at = _later(aware(alert.observed_at), hit.observed)
            alert.summary, alert.value, alert.updated_at = hit.summary, hit.value, now
        if (alert.state == "pending" and alert.fail_streak >= rc.failure_threshold
                and ((at or now) - aware(alert.pending_since)).total_seconds() >= rc.for_s):
            alert.state, alert.fired_at, alert.updated_at = "firing", now, now
            log.info("alert_firing rule=%s point=%s target=%s", alert.rule, alert.point_code, alert.target)
        return alert

    def _observe_clear(self, s, alert: Alert, seen: datetime | None, now: datetime, fresh: bool = False) -> str:
        if seen is None or (not fresh and alert.observed_at is not None and seen <= aware(alert.observed_at)):
            return "open"
        alert.ok_streak, alert.fail_streak, alert.updated_at = alert.ok_streak + 1, 0, now
        alert.observed_at = _later(aware(alert.observed_at), seen)
        if alert.state == "pending":
            alert_rows.delete_alert(s, alert)  # never fired: a blip that flap damping absorbed, nothing to remember
            return "cancelled"
        if alert.ok_streak >= self.config.rules[alert.rule].success_threshold:
            alert.state, alert.resolved_at, alert.open_key = "resolved", now, None
            log.info("alert_resolved rule=%s point=%s target=%s", alert.rule, alert.point_code, alert.target)
            return "resolved"
        return "open"

    # -- muting and notifications --------------------------------------------------------------------
    def mute_reason(self, alert: Alert, open_alerts: list[Alert], silences: list, now: datetime) -> str | None:
        """Why a firing alert must not page now: inhibited, silenced or in maintenance; None = page."""
        # A pending source inhibits too: while a link is suspected down, its degradation is not news, and
        # if the suspicion clears the timer sends the held-back alert then.
        for source, targets in self.config.inhibit:
            if alert.rule != source and ("*" in targets or alert.rule in targets) and any(
                    a.rule == source and a.state in ("pending", "firing") for a in open_alerts):
                return f"inhibited:{source}"
        for sil in silences:
            if windows.silence_matches(sil, alert.point_code, alert.region_path, alert.rule, alert.target, now):
                return f"silence:{sil.id}"
        window = windows.in_maintenance(self.config.maintenance, alert.point_code, alert.region_path, alert.rule, now)
        return f"maintenance:{window.name}" if window else None

    def _notify(self, s, view: PointView, open_alerts: list[Alert], resolved: list[Alert], fired: list[Alert],
                now: datetime, facts: _Facts) -> int:
        """Page firing alerts not yet sent and not muted; tell those paged that theirs resolved. An alert
        that fired and resolved within this evaluation (replayed history) pages both, in that order."""
        queued = 0
        over = {id(a) for a in resolved}
        for alert in open_alerts + [a for a in fired if id(a) in over]:
            if alert.notified_at is not None or not (alert.state == "firing" or id(alert) in over):
                continue
            if self.mute_reason(alert, open_alerts, facts.silences(s), now):
                continue  # looked at again by the timer until the mute ends or the alert resolves
            alert.notified_at = now
            queued += self._queue(s, alert, view.name, "firing", now)
        for alert in resolved:
            if alert.notified_at is not None:  # only people who were paged hear that it is over
                queued += self._queue(s, alert, view.name, "resolved", now)
        return queued

    def _queue(self, s, alert: Alert, point_name: str, event: str, now: datetime) -> int:
        alert_rows.flush(s)  # the alert's id goes into the payload
        payload = compose(alert, point_name, event, self.public_url, now)
        n = 0
        for notifier in self.notifiers.values():
            if event == "resolved" and not notifier.cfg.send_resolved:
                continue
            if notifier.wants(alert.severity, alert.region_path):
                alert_rows.queue_notification(s, alert.id, notifier.name, event, payload, now)
                n += 1
        return n

    # -- the timer -----------------------------------------------------------------------------------
    def tick(self) -> int:
        """Evaluate the points whose alerts can change with time alone; returns notifications queued."""
        return self.evaluate_points(self.due_points(self.clock()))

    def due_points(self, now: datetime) -> list[str]:
        """Points that went silent (or came back), have a pending alert time can move, or a firing alert not
        yet sent (muted or inhibited until now): everything else waits for its next report.

        A pending alert short of its rule's failure threshold needs another report, and one inside its
        for-duration needs time, to fire; judging them on every tick (every pending point each 10 s, though
        nothing could change) cost more than judging the reports. Always due: a pending silence (its
        streak counts evaluations: nothing else comes while a point is silent), and a pending alert of a
        point whose reports beyond its watermark have waited LOST_EVALUATION_S (their evaluation was lost)."""
        rules = self.config.rules
        rc = rules["point_silent"]
        due: set[str] = set()
        missed = now - timedelta(seconds=LOST_EVALUATION_S)
        silent_open, rows, pending, unsent = alert_rows.due_candidates(self.store, missed)
        for code, region, interval, last in rows:
            view = PointView(code, "", region, interval or 60, aware(last), None, False)
            baseline = windows.silence_baseline(self.config.maintenance, code, region, now)
            if rc.enabled and (silent_hit(view, rc, now, baseline) is not None) != (code in silent_open):
                due.add(code)
        for code, rule, streak, since, unjudged in pending:
            pc = rules.get(rule)
            if (unjudged or rule == "point_silent" or pc is None or since is None
                    or (streak >= pc.failure_threshold and (now - aware(since)).total_seconds() >= pc.for_s)):
                due.add(code)  # (pc None: a rule no longer configured, judged as it always was)
        due.update(unsent)
        return sorted(due)

    def stale_cutoff(self, now: datetime) -> datetime:
        return now - timedelta(seconds=self.config.lease_s)
