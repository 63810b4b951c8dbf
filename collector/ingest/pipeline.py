"""From accepted reports to stored rows, and the one queue that tells the rest of the collector.

The steps after a report has been accepted (authenticated, owned, parsed and cleaned: collector/ingest/
accept.py): derive the collector's own results (collector/ingest/derive.py) and store everything in one
transaction (collector/store/ingest.py, which calls the derive step inside it), then announce the points that changed on ``PointsChanged``,
whose consumers (the score keeper, the alert worker) each read the latest state once per pass.
collector/app.py wires these; nothing here registers itself anywhere.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from agent.vocabulary import AGENT_UPGRADE, FAIL, SILENCE_INTERVALS_DEFAULT
from agent.wire import Report
from collector.ingest.changes import HEARTBEAT_S_DEFAULT
from collector.ingest.derive import POLICY_GRACE_S, SKEW_WARN_S, derive
from collector.store.ingest import ReportWriter

log = logging.getLogger("pointwatch.ingest")


class PointsChanged:
    """Hands the codes of points whose reports just committed to each consumer's ``points_changed``.

    Consumers must return at once (they queue the codes for a thread of their own); one that raises is
    logged and never fails the ingest that announced.
    """

    def __init__(self, *consumers):
        self.consumers = consumers

    def announce(self, codes: list[str]) -> None:
        for consumer in self.consumers:
            try:
                consumer.points_changed(codes)
            except Exception:
                log.exception("points_changed_failed consumer=%r", consumer)


class _Claimed:
    """``ReportPipeline.receive``'s default sender: trust the agent ids the reports claim."""


class ReportPipeline:
    def __init__(self, store, points_changed: PointsChanged | None = None,
                 silence_intervals: int = SILENCE_INTERVALS_DEFAULT, skew_warn_s: float = SKEW_WARN_S,
                 policy_grace_s: float = POLICY_GRACE_S, heartbeat_s: float = HEARTBEAT_S_DEFAULT,
                 thresholds: dict[str, tuple[float, ...]] | None = None):
        self.store = store
        self.points_changed = points_changed or PointsChanged()
        self.skew_warn_s = skew_warn_s
        self.policy_grace_s = policy_grace_s
        self.writer = ReportWriter(store, silence_intervals, heartbeat_s, thresholds)
        # Told {point: (target, build, reason)} of the failed agent.upgrade results just stored, before the points are
        # announced (so an alert the rollout raises is evaluated with them): collector/releases/rollout.py
        # RolloutWatch, wired by app.py.
        self.upgrade_failed = None

    def receive(self, reports: list[Report], received_at: datetime | None = None,
                sender: str | None | type[_Claimed] = _Claimed) -> tuple[int, int]:
        """Derive, store, announce; returns (accepted, duplicates).

        ``sender``: the agent id of the token the reports came with (None: a token of no enrolled agent,
        so no fingerprint to judge against). Without it (imports, tests) the reports' own agent ids are
        taken at their word.
        """
        received_at = (received_at or datetime.now(timezone.utc)).astimezone(timezone.utc)
        agents = {r.agent_id for r in reports} if sender is _Claimed else {sender} - {None}

        def derive_all(pins, issued):  # called by the writer inside the transaction that stores them
            def pinned(report):
                agent = report.agent_id if sender is _Claimed else sender
                return pins.get(agent), agent in pins

            return {r.report_id: derive(r, received_at, *pinned(r), self.skew_warn_s, issued[r.point_code],
                                        self.policy_grace_s) for r in reports}

        accepted, duplicates = self.writer.write(reports, derive_all, agents, received_at)
        if accepted and self.upgrade_failed is not None:
            self._tell_upgrade_failures(reports)
        if accepted:
            self.points_changed.announce(sorted({r.point_code for r in reports}))
        return accepted, duplicates

    def _tell_upgrade_failures(self, reports: list[Report]) -> None:
        failing = {r.point_code: tuple(str(x.details.get(k)) for k in ("target", "sha256", "reason"))
                   for r in reports for x in r.results
                   if x.check == AGENT_UPGRADE and x.status == FAIL and isinstance(x.details, dict)}
        if not failing:
            return
        try:
            self.upgrade_failed(failing)
        except Exception:  # the rollout's bookkeeping never fails the ingest of a report already stored
            log.exception("upgrade_failures_not_evaluated points=%d", len(failing))
