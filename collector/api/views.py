"""JSON shapes of store rows, shared by the API and the web pages."""

from __future__ import annotations

from datetime import timezone

from agent.wire import rfc3339


def _ts(value):
    if value is None:
        return None
    return rfc3339(value if value.tzinfo else value.replace(tzinfo=timezone.utc))


def point_json(p) -> dict:
    return {
        "code": p.code, "name": p.name, "region": p.region_path, "profile": p.profile, "simulated": p.simulated,
        "state": p.worst, "up": p.up, "last_report_at": _ts(p.last_received_at), "counts": p.counts,
        "agent_version": p.agent_version, "hostname": p.hostname, "clock_skew_s": p.clock_skew_s,
        "fingerprint_mismatch": p.fingerprint_mismatch,
    }


def result_json(r) -> dict:
    out = {"check": r.check, "target": r.target, "status": r.status, "value": r.value, "unit": r.unit,
           "message": r.message, "details": r.details, "observed_at": _ts(r.observed_at),
           "received_at": _ts(r.received_at)}
    if hasattr(r, "since"):
        out["since"] = _ts(r.since)
    return out
