"""Turning an HTTP body into validated wire reports, or a clear 4xx naming what was wrong.

What a report may carry, decided here (the hostile-input suite, tests/test_hostile_ingest.py, holds us to it).
A refused report is answered 422 with ``{"detail": [{"field", "problem"}…]}`` naming each problem (at most 20)
and nothing of the request is stored — one bad report in a batch refuses the batch; the agent then resends
the others one by one.

- Refused: anything that is not JSON (a UTF-8 BOM is tolerated); ``NaN``/``Infinity`` and numbers that
  overflow to infinity (``1e999``) anywhere, details included; integers over 4300 digits; nesting deeper
  than Python's parser allows; wrong types (pydantic's lax mode: ``"12"`` is a number, ``"fast"`` is not);
  ``seq`` outside 0…2⁶³−1; ``point_code``, ``agent_id``, ``agent_version`` other than 1–40 printable ASCII
  characters; any timestamp before the year 2000 or from 2100 on, or without a time zone; more than
  2000 results; details over 32 KiB as JSON or nested deeper than 8 levels; a target of 1–200 characters,
  message over 2000, unit over 20, hostname over 255, os, machine id or serial over 200, more than 64 MACs.
- Accepted and cleaned (so a machine with odd bytes in a process name does not lose its reports): in every
  string, details keys included, NUL and lone UTF-16 surrogates (undecodable OS bytes, arriving as JSON
  escapes) become U+FFFD; in the text shown to people (hostname, os, fingerprint, target, message, unit)
  invisible formatting characters — bidi overrides and isolates, zero-width spaces and joiners, BOM, soft
  hyphen — are removed and other control characters become U+FFFD (message keeps tab and newline). The
  length limits apply to the cleaned text, so a target of only invisible characters is refused.
- Clamped: ``collected_at`` and ``observed_at`` more than 5 minutes ahead of the collector's clock are
  stored as the receive time, so a PC whose clock runs years ahead cannot hold a point's latest state; its
  ``sent_at`` is kept as sent, and the skew shows in the collector's ``agent.clock_skew`` result.
- Refused: a result whose check is one the collector derives itself (``COLLECTOR_CHECK_IDS``: 代理策略,
  人机信息相符, clock skew) — the judged PC may not hand in its own verdict; a batch naming one report_id twice.
- ``policy_digest``: optional; when present ``sha256:`` and 64 lowercase hex digits, else refused.
- Body limits: 1 MiB on the wire (``max_body_bytes``), 8 MiB after gzip, at most 500 reports a request.
"""

from __future__ import annotations

import json
import logging
import math
import re
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from pydantic import TypeAdapter, ValidationError

from agent import wire
from agent.vocabulary import COLLECTOR_CHECK_IDS
from collector.cleantext import shown as _shown  # the one definition of shown text

log = logging.getLogger("pointwatch.ingest")

MAX_INFLATED_BYTES = 8 * 1024 * 1024  # a gzip body may not expand past this (zip bombs)
CHECK_ID = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_-]+){0,4}$")
IDENT = re.compile(r"^[\x21-\x7e]{1,40}$")
MAX_SEQ = 2**63 - 1
YEARS = range(2000, 2100)
FUTURE_SLACK = timedelta(minutes=5)
MAX_DETAILS_DEPTH = 8
# NUL (PostgreSQL text refuses it) and lone surrogates (not encodable as UTF-8): U+FFFD in every string.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

_report_adapter = TypeAdapter(wire.Report)
_batch_adapter = TypeAdapter(wire.ReportBatch)


@dataclass
class IngestError(Exception):
    status: int
    reason: str  # stable key, counted in pointwatch_collector_ingest_rejected_total{reason}
    detail: object


async def read_payload(request, limit: int | None = None) -> bytes:
    """The request body as sent (still gzip), size-limited on the wire; ``inflate`` it off the event loop."""
    limit = limit or request.app.state.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise IngestError(413, "too_large", f"body is over {limit} bytes")
    from starlette.requests import ClientDisconnect

    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise IngestError(413, "too_large", f"body is over {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # An agent on a bad line gave up mid-body (its timeout): nothing was stored, it sends the report
        # again. One log line, not a traceback per timed-out agent.
        log.info("ingest_client_gone read_bytes=%d", size)
        raise IngestError(400, "client_disconnected", "the client went away before the body was read") from None
    return b"".join(chunks)


def inflate(body: bytes, encoding: str | None, limit: int = MAX_INFLATED_BYTES) -> bytes:
    """A body decoded from its Content-Encoding, at most ``limit`` bytes once inflated (zip bombs). CPU work:
    callers run it on a worker thread, never on the event loop."""
    encoding = (encoding or "identity").lower().strip()
    if encoding in ("identity", ""):
        if len(body) > limit:
            raise IngestError(413, "too_large", f"body is over {limit} bytes")
        return body
    if encoding != "gzip":
        raise IngestError(415, "encoding", f"unsupported Content-Encoding '{encoding}' (use gzip or none)")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise IngestError(400, "bad_gzip", f"body is not valid gzip: {exc}") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise IngestError(413, "too_large", f"decompressed body is over {limit} bytes")
    return data


def _reject_constant(name: str):
    raise ValueError(f"{name} is not allowed in JSON numbers")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is not finite")
    return value


def parse_reports(data: bytes) -> list[wire.Report]:
    try:
        payload = json.loads(data, parse_constant=_reject_constant, parse_float=_finite_float)
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
    _take_policy_digests(reports, payload["reports"] if isinstance(parsed, wire.ReportBatch) else [payload])
    if not reports:
        raise IngestError(422, "invalid", [{"field": "reports", "problem": "empty list"}])
    if len(reports) > 500:
        raise IngestError(413, "too_many", "at most 500 reports per request")
    problems = []
    now = datetime.now(timezone.utc)
    first_at: dict[str, int] = {}
    for i, report in enumerate(reports):
        j = first_at.setdefault(report.report_id, i)
        if j != i:  # the collector's results are keyed by report_id: one would take the other's verdicts
            problems.append({"field": f"reports[{i}].report_id",
                             "problem": f"'{_shown(report.report_id[:80])}' is also reports[{j}]'s report_id"})
    for i, report in enumerate(reports):
        base = f"reports[{i}]." if isinstance(parsed, wire.ReportBatch) else ""
        problems.extend({"field": base + f, "problem": p} for f, p in _semantic_problems(report, now))
    if problems:
        raise IngestError(422, "invalid", problems[:20])
    return reports


POLICY_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def _take_policy_digests(reports: list[wire.Report], raw: list) -> None:
    """Each report's optional ``policy_digest`` (the contract: the digest of the policy its results were checked
    against; absent from agents that predate it or run only their local file), from the body as sent whether
    or not this build's wire.Report declares the field. Checked in _semantic_problems."""
    for report, body in zip(reports, raw, strict=True):
        value = body.get("policy_digest") if isinstance(body, dict) else None
        report.policy_digest = value if value is not None else getattr(report, "policy_digest", None)


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


def _semantic_problems(report: wire.Report, now: datetime):
    """What the types cannot say: sizes, time zones, identifiers; cleans text and clamps future times."""
    import uuid

    try:
        uuid.UUID(report.report_id)
    except ValueError:
        yield "report_id", "must be a UUID"
    if not 0 <= report.seq <= MAX_SEQ:
        yield "seq", f"must be between 0 and {MAX_SEQ}"
    for name in ("point_code", "agent_id", "agent_version"):
        if not IDENT.match(getattr(report, name)):
            yield name, "must be 1-40 printable ASCII characters"
    digest = getattr(report, "policy_digest", None)
    if digest is not None and not (isinstance(digest, str) and POLICY_DIGEST.match(digest)):
        yield "policy_digest", "must be sha256: and 64 lowercase hex digits"
    yield from _time_problems(report, now)
    yield from _host_problems(report.host)
    if len(report.results) > wire.MAX_RESULTS_PER_REPORT:
        yield "results", f"at most {wire.MAX_RESULTS_PER_REPORT} results per report"
        return
    for j, r in enumerate(report.results):
        yield from _result_problems(f"results[{j}]", r, now)


def _bad_time(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    if ts.tzinfo is None:
        return "must be RFC 3339 with a time zone (e.g. 2026-01-01T08:00:00Z)"
    if ts.year not in YEARS:  # compared before any arithmetic: year 1 or 9999 overflow when shifted to UTC
        return f"year {ts.year} is outside {YEARS.start}-{YEARS.stop - 1}"
    return None


def _clamp(ts: datetime, now: datetime) -> datetime:
    return now if ts - now > FUTURE_SLACK else ts


def _time_problems(report: wire.Report, now: datetime):
    bad = False
    for name, ts in (("collected_at", report.collected_at), ("sent_at", report.sent_at),
                     ("host.boot_time", report.host.boot_time)):
        problem = _bad_time(ts)
        if problem:
            bad = True
            yield name, problem
    if not bad:
        report.collected_at = _clamp(report.collected_at, now)


def _host_problems(host: wire.Host):
    fp = host.fingerprint
    host.hostname, host.os = _shown(host.hostname), _shown(host.os)
    fp.machine_id, fp.serial = _shown(fp.machine_id), _shown(fp.serial)
    if len(host.hostname) > 255:
        yield "host.hostname", "longer than 255 characters"
    if len(host.os) > 200:
        yield "host.os", "longer than 200 characters"
    for name in ("machine_id", "serial"):
        if len(getattr(fp, name)) > 200:
            yield f"host.fingerprint.{name}", "longer than 200 characters"
    if len(fp.macs) > 64 or any(len(mac) > 64 for mac in fp.macs):
        yield "host.fingerprint.macs", "at most 64 addresses of at most 64 characters"
    else:
        fp.macs = [_shown(mac) for mac in fp.macs]


def _result_problems(where: str, r: wire.Result, now: datetime):
    if not CHECK_ID.match(r.check) or len(r.check) > 64:
        yield f"{where}.check", f"'{_shown(r.check[:80])}' is not a check id"
    elif r.check in COLLECTOR_CHECK_IDS:
        yield f"{where}.check", f"'{r.check}' is the collector's own verdict, never an agent's result"
    r.target, r.message = _shown(r.target), _shown(r.message, keep_lines=True)
    if not r.target or len(r.target) > 200:
        yield f"{where}.target", "must be 1-200 visible characters"
    if len(r.message) > wire.MAX_TEXT:
        yield f"{where}.message", f"longer than {wire.MAX_TEXT} characters"
    if r.unit is not None:
        r.unit = _shown(r.unit)
        if len(r.unit) > 20:
            yield f"{where}.unit", "longer than 20 characters"
    problem = _bad_time(r.observed_at)
    if problem:
        yield f"{where}.observed_at", problem
    elif r.observed_at is not None:
        r.observed_at = _clamp(r.observed_at, now)
    try:
        r.details = _clean(r.details, 1)
    except _TooDeep:
        yield f"{where}.details", f"nested deeper than {MAX_DETAILS_DEPTH} levels"
        return
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


class _TooDeep(Exception):
    pass


def _clean(value, depth: int):
    """Details with NUL and lone surrogates replaced in every key and string; refuses deep nesting."""
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value) if _UNSTORABLE.search(value) else value
    if isinstance(value, dict):
        if depth > MAX_DETAILS_DEPTH:
            raise _TooDeep()
        return {_clean(k, depth): _clean(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        if depth > MAX_DETAILS_DEPTH:
            raise _TooDeep()
        return [_clean(v, depth + 1) for v in value]
    return value
