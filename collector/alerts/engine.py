"""Alert state per point: pending → firing → resolved, muting, inhibition, and queuing notifications.

One evaluation = one transaction for one point, holding the point's ``point_state`` row lock (the same
lock ingest takes), so two collectors never evaluate one point at once and an alert is raised once.
Evaluations are idempotent: streaks move only on data newer than the alert last counted, so the timer,
a duplicate batch or a second collector re-evaluating changes nothing that has not changed.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta, timezone

from sqlalchemy.exc import IntegrityError

from collector.alerts import windows
from collector.alerts.config import AlertsConfig
from collector.alerts.messages import compose
from collector.alerts.notifiers import Notifier, build_notifier
from collector.alerts.rules import Hit, Latest, PointView, result_hits, silent_hit
from collector.store import alerts as alert_rows
from collector.store.models import Alert

log = logging.getLogger("pointwatch.alerts")


def fingerprint(rule: str, point_code: str, check: str, target: str) -> str:
    return hashlib.sha256(f"{rule}\x1f{point_code}\x1f{check}\x1f{target}".encode()).hexdigest()


def aware(ts: datetime | None) -> datetime | None:
    return None if ts is None else (ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc))


SCREEN_BATCH = 500  # points per bulk look (well under SQLite's bound on query parameters)


def _view(code, name, region_path, interval, last_received_at, clock_skew_s, fingerprint_mismatch) -> PointView:
    return PointView(code, name, region_path, interval or 60, aware(last_received_at), clock_skew_s,
                     bool(fingerprint_mismatch))


def _latest(check, target, status, value, message, details, received_at) -> Latest:
    return Latest(check, target, status, value, message, details or {}, aware(received_at))


class AlertEngine:
    def __init__(self, store, config: AlertsConfig, public_url: str = "http://127.0.0.1:8000", clock=None):
        self.store = store
        self.config = config
        self.public_url = public_url
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.notifiers: dict[str, Notifier] = {n.name: build_notifier(n) for n in config.notifiers}
        self.on_enqueued = None  # set by the worker: wakes the dispatcher when messages are queued

    # -- evaluation ----------------------------------------------------------------------------------
    def evaluate_point(self, code: str) -> int:
        """Evaluate one point now; returns the number of notifications queued."""
        for attempt in range(3):
            try:
                with self.store.session() as s:
                    queued = self._evaluate(s, code, self.clock())
                break
            except IntegrityError:  # an open alert for this fingerprint appeared under us: look again
                if attempt == 2:
                    raise
        if queued and self.on_enqueued:
            self.on_enqueued()
        return queued

    def worth_evaluating(self, codes: list[str]) -> list[str]:
        """The points among ``codes`` whose evaluation could change something: an open alert, or a fault in
        their latest state now. Most points, most of the time, have neither; judging them here in bulk, read
        without locks, spares each a transaction. A report that changes a point after this look enqueues the
        point again, so nothing is missed, only evaluated on the next pass."""
        now, due = self.clock(), []
        for i in range(0, len(codes), SCREEN_BATCH):
            chunk = codes[i:i + SCREEN_BATCH]
            opened_here, view_rows, latest_rows = alert_rows.screen(self.store, chunk)
            due.extend(opened_here)
            views = {row[0]: _view(*row) for row in view_rows}
            latest = {code: [_latest(*r) for r in rows] for code, rows in latest_rows.items()}
            opened = set(due)
            due.extend(code for code, view in views.items()
                       if code not in opened and self._hits(view, latest.get(code, []), now))
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

    def _evaluate(self, s, code: str, now: datetime) -> int:
        row = alert_rows.lock_point(s, code)
        if row is None:
            return 0
        view = _view(*row)
        latest = [_latest(*r) for r in alert_rows.latest_rows(s, code)]
        rules = self.config.rules
        hits = self._hits(view, latest, now)
        baseline = windows.silence_baseline(self.config.maintenance, code, view.region_path, now)
        open_alerts = {(a.rule, a.check, a.target): a for a in alert_rows.open_alerts(s, code)}
        data_time = {(r.check, r.target): r.received_at for r in latest}
        resolved: list[Alert] = []
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
        alert_rows.flush(s)
        return self._notify(s, view, list(open_alerts.values()), resolved, now)

    def _observe_fault(self, s, alert: Alert | None, hit: Hit, view: PointView, now: datetime) -> Alert:
        rc = self.config.rules[hit.rule]
        if alert is None:
            fp = fingerprint(hit.rule, view.code, hit.check, hit.target)
            alert = alert_rows.add_alert(
                s, fingerprint=fp, open_key=fp, rule=hit.rule, point_code=view.code, region_path=view.region_path,
                check=hit.check, target=hit.target, severity=rc.severity, state="pending", summary=hit.summary,
                value=hit.value, pending_since=hit.since or hit.observed, observed_at=hit.observed,
                fail_streak=1, ok_streak=0, updated_at=now)
        elif hit.observed > aware(alert.observed_at):
            alert.fail_streak, alert.ok_streak, alert.observed_at = alert.fail_streak + 1, 0, hit.observed
            alert.summary, alert.value, alert.updated_at = hit.summary, hit.value, now
        if (alert.state == "pending" and alert.fail_streak >= rc.failure_threshold
                and (now - aware(alert.pending_since)).total_seconds() >= rc.for_s):
            alert.state, alert.fired_at, alert.updated_at = "firing", now, now
            log.info("alert_firing rule=%s point=%s target=%s", alert.rule, alert.point_code, alert.target)
        return alert

    def _observe_clear(self, s, alert: Alert, seen: datetime | None, now: datetime) -> str:
        if seen is None or (alert.observed_at is not None and seen <= aware(alert.observed_at)):
            return "open"
        alert.ok_streak, alert.fail_streak, alert.observed_at, alert.updated_at = alert.ok_streak + 1, 0, seen, now
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

    def _notify(self, s, view: PointView, open_alerts: list[Alert], resolved: list[Alert], now: datetime) -> int:
        queued = 0
        silences = None
        for alert in open_alerts:
            if alert.state != "firing" or alert.notified_at is not None:
                continue
            silences = alert_rows.active_silences(s, now) if silences is None else silences
            if self.mute_reason(alert, open_alerts, silences, now):
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
        queued = 0
        for code in self.due_points(self.clock()):
            queued += self.evaluate_point(code)
        return queued

    def due_points(self, now: datetime) -> list[str]:
        """Points that went silent (or came back), have a pending alert whose for-duration may be over, or a
        firing alert not yet sent (muted or inhibited until now): everything else waits for its next report."""
        rc = self.config.rules["point_silent"]
        due: set[str] = set()
        silent_open, rows, waiting = alert_rows.due_candidates(self.store)
        for code, region, interval, last in rows:
            view = PointView(code, "", region, interval or 60, aware(last), None, False)
            baseline = windows.silence_baseline(self.config.maintenance, code, region, now)
            if rc.enabled and (silent_hit(view, rc, now, baseline) is not None) != (code in silent_open):
                due.add(code)
        due.update(waiting)
        return sorted(due)

    def stale_cutoff(self, now: datetime) -> datetime:
        return now - timedelta(seconds=self.config.lease_s)
