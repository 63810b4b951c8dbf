"""Evidence export of one point with 90 days of one-minute reports (~130,000), against a plain dump.

Seeds a store directly (Core inserts, realistic report bodies and results, a valid hash chain), then times:
  - the export: ``collector.evidence.bundle.export`` to a zip (reports streamed into reports.jsonl with the
    chain checked, every result streamed through the scoring engine, PDF and XLSX, signed manifest), and
  - the baseline: a plain ``SELECT`` of the same report rows dumped to a JSON-lines file.
Prints both, export/baseline as a ratio, and the process's peak RSS before and after the export (flat
memory = streaming).

    .venv/bin/python benchmarks/evidence_export.py [--days 90] [--database-url URL] [--form rows|changes]

--form: how the results are stored. ``rows`` (the default) writes every result of every report, as ingest did
before issue 21 (and as reports stored before migration 0011 are read); ``changes`` stores them as ingest does
now: each report names its keyset, and a results row is written only when a key's status changes or its
five-minute heartbeat is due.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from collector.store import points

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

POINT = "620102001001"
START = datetime(2026, 1, 1, tzinfo=timezone.utc) - timedelta(hours=8)  # 2026-01-01 00:00 Beijing time
CHECKS = [("net.core.icmp", "核心网关"), ("net.core.tcp", "10.10.1.20:443"), ("net.core.dns", "ybj.example.gov.cn"),
          ("net.core.https", "网上办理渠道"), ("isolation.internet", "223.5.5.5:53"),
          ("isolation.interfaces", "本机"), ("identity.fingerprint", "本机"), ("usage.processes", "本机"),
          ("usage.removable_media", "本机"), ("usage.listening_ports", "本机"), ("usage.accounts", "本机"),
          ("host.resources", "本机"), ("device.printer", "打印机"), ("device.kiosk", "自助服务一体机"),
          ("device.display", "电子显示屏")]


def rfc(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def seed(store, days: int, form: str = "rows") -> tuple[int, int]:
    """Reports and results rows written."""
    from sqlalchemy import insert

    from collector.evidence.chain import chain_digest
    from collector.store import models as m
    from collector.store.changewrite import keyset_of
    from collector.store.historymodels import Keyset, KeysetMember

    points.upsert_point(store, POINT, "某村医保服务点", "甘肃省/兰州市/城关区/某镇/某村", profile="lanzhou-basic-2023")
    agent_id = str(uuid.uuid4())
    fp = {"machine_id": "4c4c4544-0042-3510-8051-b4c04f4e3732", "serial": "CN0H7X2K", "macs": ["00:1a:2b:3c:4d:5e"]}
    host = {"hostname": "CUN-YB-PC01", "os": "Windows 10 Pro 22H2", "boot_time": rfc(START - timedelta(days=1)),
            "fingerprint": fp}
    n, rows = days * 24 * 60, 0
    prev = ""
    keyset_id, last_status = None, {}
    if form == "changes":
        members, digest = keyset_of(CHECKS)
        with store.session() as s:
            keyset_id = s.execute(insert(Keyset).values(point_code=POINT, digest=digest)).inserted_primary_key[0]
            s.execute(insert(KeysetMember), [{"keyset_id": keyset_id, "check": c, "target": t} for c, t in members])
    reports, results = [], []
    for i in range(n):
        at = START + timedelta(minutes=i, seconds=1)
        bad = (i // 600) % 37 == 5  # a ten-hour printer fault now and then
        res = []
        for check, target in CHECKS:
            status = "fail" if bad and check == "device.printer" else "ok"
            res.append({"check": check, "target": target, "status": status, "message": f"{target} 正常" if status == "ok"
                        else f"{target} 离线（缺纸或卡纸）", "value": 0.012 if check == "net.core.icmp" else None,
                        "unit": "seconds" if check == "net.core.icmp" else None,
                        "details": {"loss_ratio": 0.0, "rtt_max": 0.02} if check == "net.core.icmp" else {"probe": "tcp"},
                        "observed_at": rfc(at), "duration_ms": 12.5})
        report_id = str(uuid.uuid4())
        body = json.dumps({"report_id": report_id, "seq": i + 1, "agent_id": agent_id, "point_code": POINT,
                           "agent_version": "0.1.0", "collected_at": rfc(at), "sent_at": rfc(at), "host": host,
                           "results": res}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        digest = chain_digest(prev, body)
        rid = i + 1
        reports.append({"id": rid, "report_id": report_id, "point_code": POINT, "agent_id": agent_id,
                        "seq": i + 1, "collected_at": at, "sent_at": at, "received_at": at + timedelta(seconds=1),
                        "agent_version": "0.1.0", "host": host, "body": body, "prev_digest": prev, "digest": digest,
                        "keyset_id": keyset_id})
        prev = digest
        for r in res:
            if form == "changes":  # a change, or the heartbeat (every fifth one-minute report)
                key = (r["check"], r["target"])
                if last_status.get(key) == r["status"] and i % 5:
                    continue
                last_status[key] = r["status"]
            results.append({"report_pk": rid, "point_code": POINT, "check": r["check"], "target": r["target"],
                            "status": r["status"], "value": r["value"], "unit": r["unit"], "message": r["message"],
                            "details": r["details"], "observed_at": at, "received_at": at + timedelta(seconds=1)})
        if len(reports) >= 5000 or i == n - 1:
            with store.session() as s:
                s.execute(insert(m.Report), reports)
                s.execute(insert(m.Result), results)
            rows += len(results)
            reports, results = [], []
    return n, rows


def baseline(store, path: Path) -> int:
    from sqlalchemy import select

    from collector.store import models as m

    n = 0
    with store.session() as s, open(path, "w", encoding="utf-8") as fh:
        rows = s.execute(select(m.Report.report_id, m.Report.received_at, m.Report.prev_digest, m.Report.digest,
                                m.Report.body).where(m.Report.point_code == POINT).order_by(m.Report.id)
                         .execution_options(yield_per=2000))
        for rid, received, prev, digest, body in rows:
            fh.write(json.dumps({"report_id": rid, "received_at": received.isoformat(), "prev_digest": prev,
                                 "digest": digest, "body": body}, ensure_ascii=False) + "\n")
            n += 1
    return n


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--database-url", help="default: a SQLite file in a temporary directory")
    ap.add_argument("--form", choices=("rows", "changes"), default="rows", help="how results are stored (above)")
    args = ap.parse_args()
    from collector.evidence.bundle import export
    from collector.evidence.keys import load_or_create
    from collector.evidence.period import parse_period
    from collector.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(args.database_url or f"sqlite:///{tmp}/bench.db")
        store.create_schema()
        t = time.perf_counter()
        n, rows = seed(store, args.days, args.form)
        print(f"seeded {n} reports ({n * len(CHECKS)} results, {rows} results rows: --form {args.form}) "
              f"in {time.perf_counter() - t:.1f} s")
        last_day = (START + timedelta(days=args.days, hours=8) - timedelta(days=1)).date().isoformat()
        period = parse_period((START + timedelta(hours=8)).date().isoformat(), last_day)
        key = load_or_create(Path(tmp) / "key")
        rss0 = rss_mb()
        t = time.perf_counter()
        m = baseline(store, Path(tmp) / "dump.jsonl")
        t_base = time.perf_counter() - t
        t = time.perf_counter()
        with open(Path(tmp) / "bundle.zip", "wb") as fh:
            manifest = export(store, key, fh, period, codes=[POINT], actor="benchmark")
        t_export = time.perf_counter() - t
        p = manifest["points"][0]
        size = (Path(tmp) / "bundle.zip").stat().st_size / 1e6
        jsonl = manifest["files"][f"points/{POINT}/reports.jsonl"]["bytes"] / 1e6
        print(f"baseline SELECT -> JSON lines: {m} rows in {t_base:.2f} s")
        print(f"evidence export:               {p['chain']['reports']} reports in {t_export:.2f} s "
              f"(reports.jsonl {jsonl:.0f} MB, zip {size:.0f} MB, chain intact={p['chain']['intact']}, "
              f"score {p['score']['earned']:g}/{p['score']['automatic_points']:g})")
        print(f"ratio export/baseline: {t_export / t_base:.2f}")
        print(f"peak RSS: {rss0:.0f} MB before the export and baseline, {rss_mb():.0f} MB after")
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
