"""An agent's enrolment as the collector takes it: throttled, cleaned, audited whether it succeeds or not.

- Every refusal is one answer (``bad_enroll_code``: unknown, used, expired or another point's code alike),
  so a caller cannot learn that a code exists by trying it on the wrong point.
- Each refusal is an ``agent.enroll_failed`` audit entry naming the point asked for, the source address
  and why (for the admin, never the caller), in the point's region when the point exists.
- Failures are throttled like logins (collector/accounts/throttle.py): per source address, and per point
  code (5 failures, then a lock of 30 s doubling to 15 min); a locked caller is refused unchecked (429).
- The hostname and fingerprint are cleaned as ingest cleans them (collector/cleantext.py), so the pinned
  fingerprint compares with the cleaned one every report carries, and nothing shown to people or printed
  on a terminal holds RLO, zero-width, BEL or ESC.
"""

from __future__ import annotations

from collector.accounts.throttle import LoginLocked, LoginThrottle
from collector.cleantext import shown
from collector.store import StoreError, audit, enrolment, points
from collector.store.audit import Actor

__all__ = ["EnrolLocked", "enrol", "clean_fingerprint"]
EnrolLocked = LoginLocked


def enrol_throttle(store) -> LoginThrottle:
    throttle = getattr(store, "_enrol_throttle", None)
    if throttle is None:
        throttle = store._enrol_throttle = LoginThrottle()
    return throttle


def clean_fingerprint(fingerprint: dict) -> dict:
    return {"machine_id": shown(fingerprint.get("machine_id") or ""), "serial": shown(fingerprint.get("serial") or ""),
            "macs": [shown(mac) for mac in fingerprint.get("macs") or []]}


def enrol(store, code: str, point_code: str, hostname: str, fingerprint: dict,
          source: str | None = None) -> tuple[str, str]:
    """(agent id, token); raises StoreError ``bad_enroll_code`` for every bad code, EnrolLocked while the
    source or the point is locked."""
    point = shown(point_code)
    key = f"point:{point}"
    throttle = enrol_throttle(store)
    wait = throttle.retry_after(key, source)
    if wait > 0:
        _refused(store, point, source, {"reason": "locked", "retry_after_s": round(wait)})
        raise EnrolLocked(wait)
    try:
        return enrolment.enroll(store, code, point_code, shown(hostname), clean_fingerprint(fingerprint), source)
    except StoreError as exc:
        failures, lock = throttle.failed(key, source)
        details = {"reason": str(exc) if exc.code == "bad_enroll_code" else exc.code, "failures": failures}
        if lock:
            details["locked_s"] = round(lock)
        _refused(store, point, source, details)
        if lock:
            raise EnrolLocked(lock) from None
        raise StoreError("bad_enroll_code", "bad enrolment code") from None


def _refused(store, point: str, source: str | None, details: dict) -> None:
    region = points.point_region(store, point) if point else None
    audit.record(store, Actor("anonymous", source), "agent.enroll_failed", f"point:{point}", details, region or "/")
