"""Alerts that reach people: rules over the latest state, pending → firing → resolved, muting, notifiers.

Wiring (collector/app.py): ingest announces the points that changed to the worker, whose threads evaluate
and send, so a slow notifier never blocks ingest.
"""

from __future__ import annotations

from collector.alerts.config import AlertConfigError, AlertsConfig, parse
from collector.alerts.engine import AlertEngine
from collector.alerts.rules import value_thresholds
from collector.store.alerts import alerts_firing_counts

__all__ = ["AlertConfigError", "AlertEngine", "AlertsConfig", "alerts_firing_counts", "build", "parse",
           "silence_intervals", "value_thresholds"]


def build(store, settings, clock=None) -> AlertEngine:
    """The engine for a store and the collector settings (``alerts:`` in the collector config)."""
    return AlertEngine(store, parse(settings.extra.get("alerts")), public_url=settings.public_url, clock=clock)


def silence_intervals(settings) -> int:
    """After how many report intervals without a report a point is silent: the ``point_silent`` rule's number,
    which the pages, /metrics and scoring use too."""
    return parse(settings.extra.get("alerts")).rules["point_silent"].params["intervals"]
