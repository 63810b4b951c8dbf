"""Writing an evidence bundle: a zip streamed member by member, then a signed manifest.

Layout (one folder per point, so a region bundle and a point bundle read alike)::

    manifest.json            every file's SHA-256 and size, the period, the points and profiles, the
                             generator, each point's hash-chain tail/head and any break found
    manifest.sig             base64 Ed25519 signature over the exact bytes of manifest.json
    README.txt               how to verify (Chinese and English)
    summary.pdf/.xlsx        region bundles only: one line per point
    points/<code>/sheet.pdf  the 自评表 (embedded CJK font), sheet.xlsx the same table
    points/<code>/reports.jsonl   the stored reports of the period in storage order: one JSON object a line
                             with report_id, received_at, prev_digest, digest and body (the canonical JSON
                             string the digest covers, byte for byte)
    points/<code>/alerts.jsonl, silences.jsonl, point.json (registration, pinned and reported fingerprints)
    points/<code>/policy.json     the policy digests issued to the point that were in force in the period
                             (each with its policy and issue/supersede times) and every version of the
                             policy documents that apply to it (region nodes root first, then the point)
                             up to the period's end; the sheet counts only results checked against an
                             issued policy (collector/scoring/scores.py ``counted``)

Reports and results are read through streaming queries and written as they come, so memory stays flat
however long the period is.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from contextlib import contextmanager
from datetime import datetime, timezone

from agent.vocabulary import SILENCE_INTERVALS_DEFAULT
from collector import __version__
from collector.evidence import adapters, pdf, xlsx
from collector.evidence.chain import EDITED_CN, LINK_CN, ChainWalk
from collector.evidence.keys import key_id, public_b64
from collector.evidence.period import Period, iso
from collector.evidence.sheet import build_sheet, lookback
from collector.scoring.profiles import level_of
from collector.scoring.scores import counted
from collector.store import policies
from collector.store import queries as q

FORMAT = "pointwatch-evidence/1"
FLUSH_BYTES = 1 << 18


class ExportError(Exception):
    pass


class _Hashing:
    def __init__(self, raw):
        self.raw, self.sha, self.size = raw, hashlib.sha256(), 0

    def write(self, data: bytes) -> None:
        self.sha.update(data)
        self.size += len(data)
        self.raw.write(data)


class BundleWriter:
    def __init__(self, out, compresslevel: int = 1):
        # Level 1: JSON lines still shrink ~8x, at several times the speed of the default level.
        self.zf = zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel)
        self.files: dict[str, dict] = {}

    @contextmanager
    def member(self, name: str):
        with self.zf.open(name, "w", force_zip64=True) as raw:
            w = _Hashing(raw)
            yield w
        self.files[name] = {"sha256": w.sha.hexdigest(), "bytes": w.size}

    def add(self, name: str, data: bytes) -> None:
        with self.member(name) as w:
            w.write(data)

    def add_jsonl(self, name: str, rows) -> int:
        n = 0
        with self.member(name) as w:
            for row in rows:
                w.write((json.dumps(row, ensure_ascii=False, sort_keys=True, default=str) + "\n").encode("utf-8"))
                n += 1
        return n

    def abort(self) -> None:
        try:
            self.zf.close()
        except Exception:  # the stream may be gone already (client disconnected); nothing left to save
            pass

    def finish(self, manifest: dict, key) -> bytes:
        manifest["files"] = dict(sorted(self.files.items()))
        data = (json.dumps(manifest, ensure_ascii=False, sort_keys=True, indent=2) + "\n").encode("utf-8")
        self.zf.writestr("manifest.json", data)
        self.zf.writestr("manifest.sig", base64.b64encode(key.sign(data)) + b"\n")
        self.zf.close()
        return data


def _fp_key(host_text: str):
    try:
        host = json.loads(host_text)
    except (TypeError, ValueError):
        return None, {}
    fp = host.get("fingerprint") or {}
    return (host.get("hostname"), json.dumps(fp, sort_keys=True)), {"hostname": host.get("hostname"),
                                                                    "os": host.get("os"), "fingerprint": fp}


def write_reports(store, bw: BundleWriter, name: str, code: str, period: Period):
    """Stream the period's reports into ``name``; returns (chain summary, reported host changes)."""
    walk, changes = ChainWalk(), []
    last_text, last_key = None, None
    buf, size = [], 0
    with bw.member(name) as w:
        for n, (rid, received_at, prev, digest, body, host_text) in enumerate(
                q.stream_report_rows(store, code, period.start, period.end), start=1):
            walk.feed(n, rid, prev, digest, body)
            if host_text != last_text:  # parse only when the host part changed (boot time, hostname, ids)
                last_text = host_text
                k, host = _fp_key(host_text)
                if k != last_key:
                    last_key = k
                    changes.append({"at": iso(received_at), "report_id": rid, **host})
            line = json.dumps({"report_id": rid, "received_at": iso(received_at), "prev_digest": prev,
                               "digest": digest, "body": body}, ensure_ascii=False)
            buf.append(line)
            size += len(line)
            if size >= FLUSH_BYTES:
                w.write(("\n".join(buf) + "\n").encode("utf-8"))
                buf, size = [], 0
        if buf:
            w.write(("\n".join(buf) + "\n").encode("utf-8"))
    chain = walk.summary()
    for b in chain["breaks"]:
        b["problem_cn"] = EDITED_CN if b["kind"] == "edited" else LINK_CN
    return chain, changes


def _registration_json(reg: dict, changes: list[dict]) -> bytes:
    out = {**reg, "created_at": iso(reg["created_at"]),
           "agents": [{**a, "enrolled_at": iso(a["enrolled_at"])} for a in reg["agents"]],
           "reported_hosts": changes}
    return (json.dumps(out, ensure_ascii=False, sort_keys=True, indent=2) + "\n").encode("utf-8")


def policy_record(store, code: str, region: str, period: Period) -> dict:
    """What the point was checked against in the period: digests in force then, and the documents' versions."""
    issued = [i for i in policies.issued_in(store, code, period.start, period.end)]
    return {"point": code, "issued": [{**i, "issued_at": iso(i["issued_at"]),
                                       "superseded_at": iso(i["superseded_at"]) if i["superseded_at"] else None}
                                      for i in issued],
            "documents": policies.versions_applying(store, code, region, period.end)}


def export_point_files(store, bw: BundleWriter, code: str, period: Period, common: dict) -> dict:
    reg = q.point_registration(store, code)
    if reg is None:
        raise ExportError(f"no point with code '{code}'")
    base = f"points/{code}/"
    chain, changes = write_reports(store, bw, base + "reports.jsonl", code, period)
    interval = reg["report_interval_s"] or 60
    evidence = (row[:4] for row in q.stream_observations(store, code, period.start - lookback(interval), period.end)
                if counted(row[1], row[4]))
    sheet = build_sheet(reg["profile"], evidence, period, interval,
                        silent_after=common["silence_intervals"] * interval, known_from=reg["created_at"],
                        now=common["generated_at"], level=level_of(reg["region"]))
    for s in sheet.dedicated() + sheet.devices():
        if s.counts["fail"] or s.counts["error"] or s.counts["warn"]:
            s.messages = q.last_messages(store, code, period.start, period.end, s.check, s.target)
    n_alerts = bw.add_jsonl(base + "alerts.jsonl", adapters.alerts_in_period(store, code, period.start, period.end))
    n_silences = bw.add_jsonl(base + "silences.jsonl",
                              adapters.silences_in_period(store, code, period.start, period.end))
    bw.add(base + "point.json", _registration_json(reg, changes))
    policy = policy_record(store, code, reg["region"], period)
    bw.add(base + "policy.json", (json.dumps(policy, ensure_ascii=False, sort_keys=True, indent=2) + "\n")
           .encode("utf-8"))
    notes: list[str] = []
    ctx = {**common, "registration": reg, "sheet": sheet, "chain": chain, "host_changes": changes,
           "notes": notes}
    bw.add(base + "sheet.pdf", pdf.render(pdf.point_flowables, ctx))
    bw.add(base + "sheet.xlsx", xlsx.point_book(ctx))
    entry = {"code": code, "name": reg["name"], "region": reg["region"], "profile": reg["profile"],
             "profile_title": sheet.profile_title, "chain": {k: v for k, v in chain.items()},
             "score": {"earned": sheet.earned, "automatic_points": sheet.automatic_points,
                       "manual_points": sheet.manual_points, "total": sheet.total},
             "alerts": {"alerts": n_alerts, "silences": n_silences},
             "policy_digests": [i["digest"] for i in policy["issued"]],
             "files": sorted(f for f in bw.files if f.startswith(base))}
    ctx["manifest_entry"] = entry
    return ctx


README = """pointwatch 证据数据包 / evidence bundle

核验（离线，无需访问采集端数据库）：
    pointwatch-collector evidence verify 本文件.zip --public-key 采集端公钥.pem
公钥由采集端 GET /api/v1/evidence/public-key 发布，或在采集端运行 pointwatch-collector evidence public-key。
核验内容：manifest.sig 签名、manifest.json 中每个文件的 SHA-256、reports.jsonl 的报告哈希链。

Verify offline: pointwatch-collector evidence verify THIS.zip --public-key COLLECTOR-KEY.pem
manifest.sig = base64 Ed25519 signature over manifest.json; manifest.json lists every file's SHA-256.
reports.jsonl: one stored report per line; digest = sha256(prev_digest + "\\n" + body), linked line to line.
"""


def export(store, key, out, period: Period, codes: list[str] | None = None, region: str | None = None,
           actor: str = "cli", source: str | None = None,
           silence_intervals: int = SILENCE_INTERVALS_DEFAULT) -> dict:
    """Write a bundle for the given points (or every point beneath ``region``) to the binary stream ``out``."""
    if region is not None:
        codes = [p.code for p in q.list_points(store, region)]
        if not codes:
            raise ExportError(f"no points beneath region '{region}'")
    if not codes:
        raise ExportError("name a point (--point CODE) or a region (--region PATH)")
    generated_at = datetime.now(timezone.utc)
    common = {"period": period, "generated_at": generated_at, "key_id": key_id(key.public_key()),
              "generator": f"pointwatch-collector {__version__}", "silence_intervals": silence_intervals}
    for code in codes:
        if q.point_registration(store, code) is None:
            raise ExportError(f"no point with code '{code}'")
    bw = BundleWriter(out)
    try:
        bw.add("README.txt", README.encode("utf-8"))
        points = [export_point_files(store, bw, code, period, common) for code in codes]
        if region is not None:
            sctx = {**common, "region": region,
                    "points": [{**c["manifest_entry"], "sheet": c["sheet"]} for c in points]}
            bw.add("summary.pdf", pdf.render(pdf.summary_flowables, sctx))
            bw.add("summary.xlsx", xlsx.summary_book(sctx))
    except BaseException:
        bw.abort()
        raise
    entries = [c["manifest_entry"] for c in points]
    manifest = {
        "format": FORMAT, "generator": {"name": "pointwatch-collector", "version": __version__},
        "generated_at": iso(generated_at), "period": period.as_json(),
        "scope": {"region": region} if region is not None else {"point": codes[0] if len(codes) == 1 else codes},
        "point": entries[0]["code"] if len(entries) == 1 else None,
        "profile": entries[0]["profile"] if len(entries) == 1 else None,
        "points": entries,
        "chain_intact": all(e["chain"]["intact"] for e in entries),
        "pdf_font": pdf.pdf_font().as_json(),  # embedded, or the reader's own Chinese font (see pdf.py)
        "signing_key": {"algorithm": "Ed25519", "key_id": key_id(key.public_key()),
                        "public_key": public_b64(key.public_key())},
    }
    data = bw.finish(manifest, key)
    target = f"region:{region}" if region is not None else f"point:{codes[0]}" if len(codes) == 1 else "points"
    adapters.audit_export(store, actor, source, target, {
        "from": period.given_from, "to": period.given_to, "points": codes[:50], "point_count": len(codes),
        "manifest_sha256": hashlib.sha256(data).hexdigest(), "chain_intact": manifest["chain_intact"],
        "reports": sum(e["chain"]["reports"] for e in entries)},
        region if region is not None else entries[0]["region"])
    return manifest
