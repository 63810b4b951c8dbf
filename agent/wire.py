"""The report wire format, defined once.

The agent builds these dataclasses and serialises them with :func:`report_to_json`; the collector
validates incoming JSON against the very same classes (pydantic understands stdlib dataclasses), so the
two sides cannot drift apart. This module must stay dependency-free: it runs on the agent.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from agent.vocabulary import STATUS_CODE as STATUS_CODE  # re-exported: the collector reads it here
from agent.vocabulary import STATUSES

WIRE_VERSION = 1

# The statuses are the vocabulary's; STATUS_CODE is imported here too because the collector reads it from
# this module. The Literal spells them out because a type checker (and pydantic) needs them literally.
Status = Literal["ok", "warn", "fail", "error"]

# Limits the collector enforces on top of the types; the agent keeps within them when building.
MAX_RESULTS_PER_REPORT = 2000
MAX_TEXT = 2000
MAX_DETAILS_BYTES = 32 * 1024


@dataclass
class Fingerprint:
    machine_id: str = ""
    serial: str = ""
    macs: list[str] = field(default_factory=list)


@dataclass
class Host:
    hostname: str
    os: str
    boot_time: datetime | None = None
    fingerprint: Fingerprint = field(default_factory=Fingerprint)


@dataclass
class Result:
    check: str
    target: str
    status: Status
    message: str
    value: float | None = None
    unit: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    observed_at: datetime | None = None
    duration_ms: float | None = None


@dataclass
class Report:
    report_id: str
    seq: int
    agent_id: str
    point_code: str
    agent_version: str
    collected_at: datetime
    sent_at: datetime
    host: Host
    results: list[Result]
    # "sha256:<64 hex>" of the signed policy the results were checked against; absent (None, and left out
    # of the JSON) when the agent ran its local file only, and from agents that predate central policy.
    policy_digest: str | None = None


@dataclass
class ReportBatch:
    reports: list[Report]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def rfc3339(ts: datetime) -> str:
    """UTC, second precision with milliseconds, 'Z' suffix: what both sides write and store."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return ts.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _jsonable(obj: Any) -> Any:
    # Dataclasses are walked here in the same pass as the rest, not through dataclasses.asdict first: asdict
    # deep-copies every value (each result's details) only for this walk to copy it again.
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, datetime):
        return rfc3339(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no NaN/Infinity; an unmeasurable value is "no value"
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [_jsonable(v) for v in obj]
    return obj


def report_to_dict(report: Report) -> dict[str, Any]:
    out = _jsonable(report)
    if out.get("policy_digest") is None:
        out.pop("policy_digest", None)
    return out


def result_to_dict(result: Result) -> dict[str, Any]:
    return _jsonable(result)


def report_to_json(report: Report) -> str:
    return json.dumps(report_to_dict(report), ensure_ascii=False, separators=(",", ":"))


def summarize(results: list[Result]) -> dict[str, int]:
    summary = {s: 0 for s in STATUSES}
    for r in results:
        summary[r.status] += 1
    return summary
