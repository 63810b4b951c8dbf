"""A submitted review as a signed bundle, in the evidence bundle's signed-manifest format (evidence/bundle.py).

Layout::

    manifest.json     format pointwatch-review/1: every file's SHA-256 and size, the review's sums, the
                      reviewer's authenticated identity, the collector's signing key
    manifest.sig      base64 Ed25519 signature over the exact bytes of manifest.json (the collector's key)
    README.txt        how to verify
    review.json       the whole review: the frozen automatic part (the monitor's sheet and the reports'
                      hash-chain digests), every entry, attachment digests, the sums
    sheet.pdf/.xlsx   the final 自评表 (collector/review/finalsheet.py)
    attachments/<sha256>.<ext>   the photos and scans, named by their digest

The bundle is built once, at submission, and stored as it is (content-addressed): GET …/bundle.zip serves
those bytes, so the signed file never changes.
"""

from __future__ import annotations

import hashlib
import io
import json
from datetime import timedelta

from collector import __version__
from collector.evidence.bundle import BundleWriter
from collector.evidence.keys import key_id, public_b64
from collector.evidence.period import iso, local
from collector.review import files, finalsheet, lines

FORMAT = "pointwatch-review/1"

README = """pointwatch 评审数据包 / review bundle

核验（离线）：
    pointwatch-collector evidence verify 本文件.zip --public-key 采集端公钥.pem
核验内容：manifest.sig 签名、manifest.json 中每个文件的 SHA-256、review.json 的合计（自动项 + 人工项 = 总分）
与附件摘要。review.json 记录评审人身份、冻结的自动评分部分、每一项评分与说明。

Verify offline: pointwatch-collector evidence verify THIS.zip --public-key COLLECTOR-KEY.pem
"""


def period_label(period: dict | None, given_from: str, given_to: str) -> str:
    from datetime import datetime

    if not period:
        return f"{given_from} 至 {given_to}"
    start = datetime.fromisoformat(period["from"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(period["to"].replace("Z", "+00:00")) - timedelta(microseconds=1)
    return f"{local(start)} 至 {local(end)}（北京时间）"


def review_part(rec, replaced, submitted_at) -> dict:
    point = rec.frozen.get("point") or {}
    return {"id": rec.id, "point": rec.point_code, "name": point.get("name"), "region": rec.region_path,
            "profile": rec.profile, "profile_title": (rec.frozen.get("sheet") or {}).get("title"),
            "from": rec.given_from, "to": rec.given_to, "period": rec.frozen.get("period"),
            "opened_at": iso(rec.opened_at), "submitted_at": iso(submitted_at),
            "replaces": {"id": replaced.id, "reviewer": replaced.reviewer,
                         "manifest_sha256": replaced.manifest_sha256} if replaced else None}


def sheet_context(rec, ls, sums, replaced=None, submitted_at=None, key=None, draft=False) -> dict:
    review = review_part(rec, replaced, submitted_at)
    review.update(period_label=period_label(rec.frozen.get("period"), rec.given_from, rec.given_to),
                  opened=rec.opened_at, submitted=submitted_at, automatic_at=_when(rec.frozen.get("computed_at")))
    return {"review": review, "reviewer": rec.identity, "lines": ls, "totals": sums, "draft": draft,
            "key_id": key_id(key.public_key()) if key is not None else None, "chain": rec.frozen.get("chain"),
            "attachments_general": [a for a in rec.attachments if not a.get("item")]}


def _when(text):
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _attachment_rows(rec) -> list[dict]:
    return [{"sha256": a["sha256"], "media_type": a["media_type"], "bytes": a["bytes"], "name": a["name"],
             "item": a["item"], "added_at": iso(a["added_at"]), "file": files.bundle_name(a["sha256"], a["media_type"])}
            for a in rec.attachments]


def review_json(rec, ls, sums, replaced, submitted_at) -> bytes:
    atts = _attachment_rows(rec)
    by_item: dict[str, list] = {}
    for a in atts:
        by_item.setdefault(a["item"] or "", []).append(a)
    line_rows = []
    for x in ls:
        row = lines.line_json(x)
        row["attachments"] = by_item.get(x.id, [])
        line_rows.append(row)
    doc = {"format": FORMAT, "review": review_part(rec, replaced, submitted_at), "reviewer": rec.identity,
           "automatic_part": rec.frozen, "lines": line_rows, "attachments": atts, "totals": sums,
           "entries": {k: {**v, "updated_at": iso(v["updated_at"])} for k, v in rec.entries.items()}}
    return (json.dumps(doc, ensure_ascii=False, sort_keys=True, indent=1, default=str) + "\n").encode("utf-8")


def build(rec, ls, sums, blobs: dict[str, bytes], key, submitted_at, replaced=None) -> tuple[bytes, str]:
    """The signed bundle's bytes and the SHA-256 of its manifest.json."""
    out = io.BytesIO()
    bw = BundleWriter(out, compresslevel=6)
    bw.add("README.txt", README.encode("utf-8"))
    bw.add("review.json", review_json(rec, ls, sums, replaced, submitted_at))
    ctx = sheet_context(rec, ls, sums, replaced, submitted_at, key)
    bw.add("sheet.pdf", finalsheet.pdf_bytes(ctx))
    bw.add("sheet.xlsx", finalsheet.xlsx_bytes(ctx))
    for a in rec.attachments:
        name = files.bundle_name(a["sha256"], a["media_type"])
        if name not in bw.files:
            bw.add(name, blobs[a["sha256"]])
    manifest = {
        "format": FORMAT, "generator": {"name": "pointwatch-collector", "version": __version__},
        "generated_at": iso(submitted_at), "point": rec.point_code, "profile": rec.profile,
        "period": rec.frozen.get("period"),
        "review": {"id": rec.id, "state": "submitted", "total": sums["total"], "automatic": sums["automatic"],
                   "manual": sums["manual"], "vetoed": sums["vetoed"], "vetoed_by": sums["vetoed_by"],
                   "overridden": sums["overridden"], "opened_at": iso(rec.opened_at),
                   "submitted_at": iso(submitted_at),
                   "replaces": {"id": replaced.id, "manifest_sha256": replaced.manifest_sha256} if replaced else None,
                   "automatic_chain": {k: (rec.frozen.get("chain") or {}).get(k)
                                       for k in ("reports", "tail", "head", "intact")}},
        "reviewer": rec.identity,
        "signed_by": "collector key, for the reviewer named in 'reviewer' as the collector authenticated them",
        "signing_key": {"algorithm": "Ed25519", "key_id": key_id(key.public_key()),
                        "public_key": public_b64(key.public_key())},
    }
    data = bw.finish(manifest, key)
    return out.getvalue(), hashlib.sha256(data).hexdigest()
