"""Alerts that reach people: rules over the latest state, pending → firing → resolved, muting, notifiers.

Wiring (``start``): the engine is registered as a post-commit ingest hook on the store; ingest only hands
it point codes, and the worker's threads evaluate and send, so a slow notifier never blocks ingest.
"""

from __future__ import annotations

from collector.alerts.config import AlertConfigError, AlertsConfig, parse
from collector.alerts.engine import AlertEngine
from collector.store.alerts import alerts_firing_counts

__all__ = ["AlertConfigError", "AlertEngine", "AlertsConfig", "alerts_firing_counts", "build", "parse"]


def build(store, settings, clock=None) -> AlertEngine:
    """The engine for a store and the collector settings (``alerts:`` in the collector config)."""
    return AlertEngine(store, parse(settings.extra.get("alerts")), public_url=settings.public_url, clock=clock)
