"""/metrics at province scale: render time and size for 25,000 points, against prometheus-client.

Seeds a SQLite store (in a temporary directory) with N points, each holding a realistic latest state of
20 results (2 ICMP + 2 TCP core targets, DNS, HTTPS, 3 internet canaries, interfaces, identity, 4 usage
checks, 4 devices with a 4-supply printer, host resources), inserted directly through the store's tables.
Then prints, as the median of several runs:

- the collector's render (``FleetCollector.render``: live families and the stored per-point lines),
- the baseline: prometheus-client exposing the same number of samples from plain labelled Gauges
  (values already set; only ``generate_latest`` is timed),

and the ratios against the baseline.

    .venv/bin/python benchmarks/metrics_render.py [--points 25000] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry, Gauge, generate_latest  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from collector.metrics.render import FleetCollector  # noqa: E402
from collector.scoring.scorekeeper import rescore  # noqa: E402
from collector.store import (
    Store,  # noqa: E402
    metriclines,
)
from collector.store import models as m  # noqa: E402

SUPPLIES = [("toner", "1.1", "黑色墨粉盒 CF258A"), ("opc", "1.2", "硒鼓 CF232A"), ("wasteToner", "1.3", "废粉盒"),
            ("fuser", "1.4", "定影组件")]


def _results(i: int):
    """(check, target, status, value, unit, details) of one point's latest state."""
    bad = i % 97 == 0
    out = []
    for n, name in enumerate(("核心网关", "省医保信息平台")):
        rtt = 0.004 + (i % 50) / 10000 + n / 1000
        out.append(("net.core.icmp", name, "ok", rtt, "seconds",
                    {"method": "icmp", "sent": 3, "loss_ratio": 0.0, "rtt_avg_s": rtt, "rtt_max_s": rtt * 1.5,
                     "rtt_min_s": rtt * 0.8, "jitter_s": 0.0003, "target": f"10.10.0.{n + 1}"}))
    for name in ("省医保信息平台:443", "医保结算前置机:8080"):
        out.append(("net.core.tcp", name, "fail" if bad else "ok", 0.006, "seconds", {"port": 443}))
    out.append(("net.core.dns", "ybj.example.gov.cn", "ok", 0.002, "seconds", {"addresses": ["10.10.1.20"]}))
    out.append(("net.core.https", "网上办理渠道", "ok", 0.05, "seconds", {"status_code": 200, "tls_days_left": 200}))
    for canary in ("223.5.5.5:53", "114.114.114.114", "www.baidu.com"):
        out.append(("isolation.internet", canary, "ok", None, None, {"reachable": False}))
    out.append(("isolation.interfaces", "本机", "ok", None, None, {"interfaces": ["eth0"]}))
    out.append(("identity.fingerprint", "本机", "ok", None, None, {"factors": 3}))
    for check in ("usage.processes", "usage.removable_media", "usage.listening_ports", "usage.accounts"):
        out.append((check, "本机", "ok", None, None, {}))
    for kind, name in (("kiosk", "自助服务一体机"), ("queue", "自助取号机"), ("scanner", "OCR扫描仪")):
        out.append((f"device.{kind}", name, "ok", None, None, {"methods": [{"method": "icmp", "answered": True}]}))
    supplies = [{"index": idx, "description": d, "type": t, "level": 40 + (i % 60), "max_capacity": 100,
                 "ratio": (40 + (i % 60)) / 100, "state": "measured"} for t, idx, d in SUPPLIES]
    # The shape agent/checks/devices.combine() reports: per-method details, supplies lifted to the top.
    out.append(("device.printer", "打印机", "ok", 1.0, None,
                {"kind": "printer", "required": True, "present": True, "working": True,
                 "methods": [{"method": "snmp", "answered": True, "status": "ok", "message": "打印机正常",
                              "host": "10.10.5.30", "port": 161, "sys_descr": "HP LaserJet M403d",
                              "conditions": [], "supplies": supplies, "alerts": []}],
                 "supplies": supplies}))
    out.append(("host.resources", "本机", "ok", 0.3, "ratio", {"cpu": 0.1, "memory": 0.3, "disk": 0.4}))
    return out


def seed(store: Store, n_points: int) -> None:
    now = datetime.now(timezone.utc)
    counties = [f"甘肃省/兰州市/县{c:02d}" for c in range(50)]
    with store.session() as s:
        regions = {"甘肃省": 1, "甘肃省/兰州市": 2}
        points, states, latest = [], [], []
        for i in range(n_points):
            county = counties[i % len(counties)]
            region = f"{county}/镇{(i // 50) % 20:02d}/村{i:05d}"
            parts = region.split("/")
            for lvl in range(1, len(parts) + 1):
                regions.setdefault("/".join(parts[:lvl]), lvl)
            code = f"62{i:010d}"
            points.append({"code": code, "name": f"村{i:05d}医保服务点", "region_path": region,
                           "profile": "national-basic", "report_interval_s": 60, "simulated": True,
                           "created_at": now})
            received = now - timedelta(seconds=i % 50 if i % 101 else 3600)
            states.append({"point_code": code, "last_received_at": received, "last_collected_at": received,
                           "last_seq": 1, "last_digest": "", "agent_id": f"agent-{i}", "agent_version": "0.1.0",
                           "clock_skew_s": 0.2, "seq_gaps": 0, "fingerprint_mismatch": False, "reports_total": 1})
            for check, target, status, value, unit, details in _results(i):
                latest.append({"point_code": code, "check": check, "target": target, "status": status,
                               "value": value, "unit": unit, "message": "正常", "details": details,
                               "observed_at": received, "received_at": received, "since": received,
                               "report_id": f"r-{i}"})
        s.execute(insert(m.Region), [{"path": p, "name": p.rsplit("/", 1)[-1],
                                      "parent_path": p.rsplit("/", 1)[0] if "/" in p else None, "level": lvl}
                                     for p, lvl in regions.items()])
        s.execute(insert(m.Point), points)
        s.execute(insert(m.PointState), states)
        for k in range(0, len(latest), 50000):
            s.execute(insert(m.LatestResult), latest[k:k + 50000])


def baseline_registry(text: bytes) -> CollectorRegistry:
    """Plain labelled Gauges holding the same families, label names and sample count as ``text``."""
    from prometheus_client.parser import text_string_to_metric_families

    registry = CollectorRegistry(auto_describe=False)
    for fam in text_string_to_metric_families(text.decode("utf-8")):
        if not fam.samples:
            continue
        names = sorted(fam.samples[0].labels)
        gauge = Gauge(fam.name, fam.documentation, names, registry=registry)
        for s in fam.samples:
            gauge.labels(*(s.labels[k] for k in names)).set(s.value)
    return registry


def timed(fn, runs: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=25000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="pw-bench-metrics-") as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'pointwatch.db'}")
        store.create_schema()
        t0 = time.perf_counter()
        seed(store, args.points)
        print(f"seeded {args.points} points x {len(_results(0))} results in {time.perf_counter() - t0:.1f} s")
        # In operation the score keeper does this per point after each ingest; here once for the fleet.
        t0 = time.perf_counter()
        rescore(store, [p[0] for p in metriclines.metrics_points(store, "/")])
        keeper_s = time.perf_counter() - t0
        print(f"score keeper: now-scores and /metrics lines of {args.points} points in {keeper_s:.1f} s "
              f"({keeper_s / args.points * 1000:.2f} ms per point, paid at ingest, not at scrape)")

        fleet = FleetCollector(store)
        fleet_s, text = timed(fleet.render, args.runs)
        samples = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))

        registry = baseline_registry(text)
        base_s, base_text = timed(lambda: generate_latest(registry), args.runs)
        base_samples = sum(1 for line in base_text.splitlines() if line and not line.startswith(b"#"))
        store.close()

    print(f"samples: {samples} (baseline {base_samples}); /metrics size {len(text) / 1e6:.1f} MB")
    print(f"collector /metrics render (live families + stored lines): {fleet_s:.3f} s")
    print(f"baseline plain Gauges, generate_latest only:  {base_s:.3f} s")
    print(f"ratio collector render / baseline: {fleet_s / base_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
