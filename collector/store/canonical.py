"""A report as the collector keeps it: the canonical JSON body that is hash-chained, and plain JSON text.

The chained body is the report with sorted keys, no spaces, UTF-8 text (identical to ``json.dumps`` with those
options), so the evidence verifier recomputes every digest from the stored bodies alone.
"""

from __future__ import annotations

import json

from agent.wire import Report, rfc3339


def _encoder(**options):
    """``json.dumps(obj, **options)`` for dicts, minus building an encoder per call (≈40 calls a report).

    The C encoder is made once, without the circular-reference check (values come from parsed JSON, which
    has no cycles); the output is checked against json.dumps here, else json.dumps is used as it is.
    """
    enc = json.JSONEncoder(**options)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return enc.encode
    try:
        c = make(None, enc.default, json.encoder.encode_basestring if not enc.ensure_ascii else
                 json.encoder.encode_basestring_ascii, enc.indent, enc.key_separator, enc.item_separator,
                 enc.sort_keys, enc.skipkeys, enc.allow_nan)

        def encode(obj):
            return "".join(c(obj, 0))

        probe = {"b": [1, 2.5, None, True], "a": "上 \"\n", "c": {"z": 1e16, "y": -0.0}}
        if encode(probe) == json.dumps(probe, **options):
            return encode
    except Exception:  # another Python's C encoder: keep the documented path
        pass
    return enc.encode


CANONICAL_JSON = _encoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))  # the chained body's form
PLAIN_JSON = _encoder(ensure_ascii=False)  # what json.dumps(x, ensure_ascii=False) writes
_INF = float("inf")


def _ts(ts):
    return None if ts is None else rfc3339(ts)


def _jsonable_details(d):
    if not d:
        return {}
    for v in d.values():  # parsed from JSON already in the common case: nothing to convert
        if not isinstance(v, (str, int, float, bool)) or (isinstance(v, float) and v != v):
            from agent.wire import _jsonable

            return _jsonable(d)
    return d


def _finite(v):
    # NaN and ±inf have no JSON form: stored as "no value", as the agent's own serialiser does.
    return None if isinstance(v, float) and (v != v or v in (_INF, -_INF)) else v


def report_dict(report: Report) -> dict:
    """Same shape as ``agent.wire.report_to_dict`` without dataclasses.asdict's deep copies."""
    h, fp = report.host, report.host.fingerprint
    stamps: dict = {}  # the results of one report mostly share a few observed_at values

    def ts(t):
        if t is None:
            return None
        try:
            return stamps[t]
        except KeyError:
            stamps[t] = text = rfc3339(t)
            return text

    out = {
        "report_id": report.report_id, "seq": report.seq, "agent_id": report.agent_id,
        "point_code": report.point_code, "agent_version": report.agent_version,
        "collected_at": ts(report.collected_at), "sent_at": ts(report.sent_at),
        "host": {"hostname": h.hostname, "os": h.os, "boot_time": ts(h.boot_time),
                 "fingerprint": {"machine_id": fp.machine_id, "serial": fp.serial, "macs": list(fp.macs)}},
        "results": [{"check": r.check, "target": r.target, "status": r.status, "message": r.message,
                     "value": _finite(r.value), "unit": r.unit, "details": _jsonable_details(r.details),
                     "observed_at": ts(r.observed_at), "duration_ms": _finite(r.duration_ms)}
                    for r in report.results],
    }
    # Only when sent, so the bodies (and digests) of reports from agents without central policy are unchanged.
    digest = getattr(report, "policy_digest", None)
    if digest is not None:
        out["policy_digest"] = digest
    return out


def canonical_json(report: Report, as_dict: dict | None = None) -> str:
    """The chained body: sorted keys, no spaces, UTF-8 text (identical to json.dumps with those options)."""
    return CANONICAL_JSON(as_dict or report_dict(report))




