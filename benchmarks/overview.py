"""Overview of a region with 25,000 points: server-side time of the overview query vs a bare query.

Seeds an SQLite store directly (points, point_state counters, 12 latest results per point), then times
`overview.overview(store, …)` for the root region (page 1, worst first, region tree counts, violation totals), for a
filtered view (points failing a 专用 check), for one county and for a search, beside the baseline: a bare
SELECT of every point of the region with its counters (a bare SELECT of one page is printed too). Prints
medians and ratios against the baseline.

    .venv/bin/python benchmarks/overview.py [--points 25000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert, select, text  # noqa: E402

from collector.store import (
    Store,  # noqa: E402
    overview,
)
from collector.store import models as m  # noqa: E402
from collector.store import points as points_repo
from collector.store.overview import OverviewQuery  # noqa: E402

CHECKS = ["net.core.icmp", "net.core.tcp", "net.core.dns", "isolation.internet", "isolation.interfaces",
          "identity.fingerprint", "usage.processes", "usage.removable_media", "usage.listening_ports",
          "host.resources", "device.kiosk", "device.printer"]


def seed(store: Store, n: int) -> None:
    rng = random.Random(7)
    now = datetime.now(timezone.utc)
    points, states, latest = [], [], []
    for i in range(n):
        county, town, village = i // 2500, (i // 100) % 25, i % 100
        code = f"62{county:02d}{town:03d}{village:05d}"
        region = f"甘肃省/某市/县{county:02d}/镇{town:03d}/村{village:03d}"
        points.append(dict(code=code, name=f"县{county}镇{town}村{village}医保服务点", region_path=region,
                           profile="lanzhou-basic-2023", report_interval_s=60, simulated=True, created_at=now))
        statuses = ["ok"] * len(CHECKS)
        if rng.random() < 0.08:
            statuses[rng.randrange(len(CHECKS))] = rng.choice(("fail", "warn", "error"))
        counts = {s: statuses.count(s) for s in ("ok", "warn", "fail", "error")}
        silent = rng.random() < 0.02
        states.append(dict(point_code=code, last_received_at=now, last_digest="", seq_gaps=0, reports_total=1,
                           n_ok=counts["ok"], n_warn=counts["warn"], n_fail=counts["fail"], n_error=counts["error"],
                           silent_after=now - timedelta(minutes=5) if silent else now + timedelta(minutes=3)))
        for check, status in zip(CHECKS, statuses, strict=True):
            latest.append(dict(point_code=code, check=check, target="本机", status=status, value=None, unit=None,
                               message=f"{check} {status}", details={}, observed_at=now, received_at=now,
                               since=now, report_id="00000000-0000-4000-8000-000000000000"))
    points_repo.upsert_point(store, "bootstrap", "x", "甘肃省")  # creates the region rows' table paths lazily
    with store.engine.begin() as conn:
        conn.execute(insert(m.Point), points)
        conn.execute(insert(m.PointState), states)
        for k in range(0, len(latest), 50000):
            conn.execute(insert(m.LatestResult), latest[k:k + 50000])
        conn.execute(text("ANALYZE"))


def timed(fn, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=25000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(tmp)
        t0 = time.perf_counter()
        seed(store, args.points)
        print(f"seeded {args.points} points, {args.points * len(CHECKS)} latest results in {time.perf_counter() - t0:.1f} s")

        def bare():
            with store.engine.connect() as conn:
                conn.execute(select(m.Point, m.PointState).join(m.PointState, m.PointState.point_code == m.Point.code)
                             .order_by(m.Point.code).limit(100)).all()

        cases = {
            "root, page 1": OverviewQuery(scope="/"),
            "root, failing 专用": OverviewQuery(scope="/", family="usage"),
            "one county": OverviewQuery(scope="甘肃省/某市/县03"),
            "search": OverviewQuery(scope="/", search="村42"),
        }
        def bare_all():
            with store.engine.connect() as conn:
                conn.execute(select(m.Point.code, m.Point.name, m.Point.region_path, m.PointState.n_fail,
                                    m.PointState.silent_after)
                             .join(m.PointState, m.PointState.point_code == m.Point.code)).all()

        page = timed(bare, args.rounds)
        base = timed(bare_all, args.rounds)
        print(f"bare SELECT of one page: median {page * 1000:.1f} ms; "
              f"baseline bare SELECT of the region's {args.points} rows: median {base * 1000:.1f} ms")
        for name, q in cases.items():
            t = timed(lambda q=q: overview.overview(store, q), args.rounds)
            print(f"overview {name:<20} median {t * 1000:7.1f} ms   ratio {t / base:6.1f}x baseline")
        store.close()


if __name__ == "__main__":
    main()
