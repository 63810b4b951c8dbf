"""The bundle's seams to the alerts and the audit log."""

from __future__ import annotations

from collector.store import audit
from collector.store.alerts import alerts_in_period, silences_in_period

__all__ = ["alerts_in_period", "audit_export", "silences_in_period"]


def audit_export(store, actor: str, source: str | None, target: str, details: dict, region_path: str) -> None:
    from collector.store.audit import Actor

    audit.record(store, Actor(actor, source), "evidence.export", target, details, region_path)
