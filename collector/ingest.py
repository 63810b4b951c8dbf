"""Turning an HTTP body into validated wire reports, or a clear 4xx naming what was wrong."""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass

from pydantic import TypeAdapter, ValidationError

from agent import wire

MAX_INFLATED_BYTES = 8 * 1024 * 1024  # a gzip body may not expand past this (zip bombs)
CHECK_ID = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_-]+){0,4}$")

_report_adapter = TypeAdapter(wire.Report)
_batch_adapter = TypeAdapter(wire.ReportBatch)


@dataclass
class IngestError(Exception):
    status: int
    reason: str  # stable key, counted in pointwatch_collector_ingest_rejected_total{reason}
    detail: object


async def read_payload(request) -> bytes:
    """The request body, size-limited before and after gzip, as agents send it."""
    limit = request.app.state.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise IngestError(413, "too_large", f"body is over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise IngestError(413, "too_large", f"body is over {limit} bytes")
        chunks.append(chunk)
    return inflate(b"".join(chunks), request.headers.get("content-encoding"))


def inflate(body: bytes, encoding: str | None) -> bytes:
    encoding = (encoding or "identity").lower().strip()
    if encoding in ("identity", ""):
        return body
    if encoding != "gzip":
        raise IngestError(415, "encoding", f"unsupported Content-Encoding '{encoding}' (use gzip or none)")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, MAX_INFLATED_BYTES + 1)
    except zlib.error as exc:
        raise IngestError(400, "bad_gzip", f"body is not valid gzip: {exc}") from None
    if len(data) > MAX_INFLATED_BYTES or inflater.unconsumed_tail:
        raise IngestError(413, "too_large", f"decompressed body is over {MAX_INFLATED_BYTES} bytes")
    return data


def _reject_constant(name: str):
    raise ValueError(f"{name} is not allowed in JSON numbers")


def parse_reports(data: bytes) -> list[wire.Report]:
    try:
        payload = json.loads(data, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IngestError(422, "bad_json", f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise IngestError(422, "too_deep", "JSON is nested too deeply") from None
    if isinstance(payload, dict) and "reports" in payload:
        adapter, prefix = _batch_adapter, ""
    elif isinstance(payload, dict):
        adapter, prefix = _report_adapter, ""
    else:
        raise IngestError(422, "bad_shape", "body must be a report object or {\"reports\": [...]}")
    try:
        parsed = adapter.validate_python(payload)
    except ValidationError as exc:
        raise IngestError(422, "invalid", [
            {"field": prefix + _loc(e["loc"]), "problem": e["msg"]} for e in exc.errors()[:20]
        ]) from None
    reports = parsed.reports if isinstance(parsed, wire.ReportBatch) else [parsed]
    if not reports:
        raise IngestError(422, "invalid", [{"field": "reports", "problem": "empty list"}])
    if len(reports) > 500:
        raise IngestError(413, "too_many", "at most 500 reports per request")
    problems = []
    for i, report in enumerate(reports):
        base = f"reports[{i}]." if isinstance(parsed, wire.ReportBatch) else ""
        problems.extend({"field": base + f, "problem": p} for f, p in _semantic_problems(report))
    if problems:
        raise IngestError(422, "invalid", problems[:20])
    return reports


def _loc(loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("Report", "ReportBatch", "Result", "Host", "Fingerprint"):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def _semantic_problems(report: wire.Report):
    """What the types cannot say: sizes, time zones, identifiers."""
    import uuid

    try:
        uuid.UUID(report.report_id)
    except ValueError:
        yield "report_id", "must be a UUID"
    if report.seq < 0:
        yield "seq", "must not be negative"
    for name in ("collected_at", "sent_at"):
        ts = getattr(report, name)
        if ts.tzinfo is None:
            yield name, "must be RFC 3339 with a time zone (e.g. 2026-01-01T08:00:00Z)"
    if report.host.boot_time is not None and report.host.boot_time.tzinfo is None:
        yield "host.boot_time", "must carry a time zone"
    for name in ("point_code", "agent_id", "agent_version"):
        if not 0 < len(getattr(report, name)) <= 40:
            yield name, "must be 1-40 characters"
    if len(report.results) > wire.MAX_RESULTS_PER_REPORT:
        yield "results", f"at most {wire.MAX_RESULTS_PER_REPORT} results per report"
        return
    for j, r in enumerate(report.results):
        where = f"results[{j}]"
        if not CHECK_ID.match(r.check) or len(r.check) > 64:
            yield f"{where}.check", f"'{r.check[:80]}' is not a check id"
        if not r.target or len(r.target) > 200:
            yield f"{where}.target", "must be 1-200 characters"
        if len(r.message) > wire.MAX_TEXT:
            yield f"{where}.message", f"longer than {wire.MAX_TEXT} characters"
        if r.unit is not None and len(r.unit) > 20:
            yield f"{where}.unit", "longer than 20 characters"
        if r.observed_at is not None and r.observed_at.tzinfo is None:
            yield f"{where}.observed_at", "must carry a time zone"
        if not _surely_small(r.details) and len(json.dumps(r.details, ensure_ascii=False)) > wire.MAX_DETAILS_BYTES:
            yield f"{where}.details", f"larger than {wire.MAX_DETAILS_BYTES} bytes"


_SCALARS = (bool, float, type(None))


def _surely_small(details: dict) -> bool:
    """Details of a few scalars are within MAX_DETAILS_BYTES without serialising them (the common case, and
    serialising 40 of them per report cost more than validating the report): a JSON string is at most
    6 characters (\\uXXXX) per character plus quotes, a float or 64-bit int at most 25."""
    size = 2
    for k, v in details.items():
        if not isinstance(k, str):
            return False
        if isinstance(v, str):
            size += 6 * len(v) + 2
        elif isinstance(v, _SCALARS) or (isinstance(v, int) and -(2**63) <= v < 2**63):
            size += 25
        else:
            return False  # lists, objects, huge ints: measure them
        size += 6 * len(k) + 6  # quotes, ": ", ", "
        if size > wire.MAX_DETAILS_BYTES:
            return False
    return True
