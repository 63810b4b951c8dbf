"""Scoring time for a county: N points over D days of 5-minute reports, against a plain pass.

Each point's stream is the results a real agent sends every 5 minutes (core network ×4, 专网 ×2, 专用 ×4,
devices ×3) plus hourly identity, with a few outages and a silent stretch drawn at random. Streams are
built before timing (a handful of variants, cycled over the points, so building them does not dominate
the run); then for every point the same rows go through

- the baseline: one plain pass counting statuses, the least any scorer must do, and
- the engine: ``score_period`` against the Lanzhou city profile, plus the county ranking at the end.

Prints both times and their ratio. Run: ``.venv/bin/python benchmarks/scoring.py [--points 500 --days 30]``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collector.scoring import Observation, load_profiles, rank_points, score_period  # noqa: E402

START = datetime(2024, 3, 1, tzinfo=timezone.utc)
EVERY_REPORT = [
    ("net.core.icmp", "10.10.0.1"), ("net.core.tcp", "10.10.1.20:443"), ("net.core.dns", "ybj.example.gov.cn"),
    ("net.core.https", "https://10.10.1.20/health"), ("isolation.internet", "223.5.5.5:53"),
    ("isolation.interfaces", ""), ("usage.processes", ""), ("usage.listening_ports", ""),
    ("usage.accounts", ""), ("usage.removable_media", ""), ("device.kiosk", "自助服务一体机"),
    ("device.display", "电子显示屏"), ("device.printer", "打印机"),
]
HOURLY = [("identity.fingerprint", ""), ("identity.matches_enrolment", "")]


def build_stream(seed: int, days: int, interval: int) -> list[Observation]:
    rng = random.Random(seed)
    t0 = START.timestamp()
    slots = days * 86400 // interval
    # A few outages of random checks (fail for up to a day) and one silent stretch of up to half a day.
    outages = []
    for _ in range(rng.randint(0, 4)):
        check, _target = rng.choice(EVERY_REPORT)
        a = rng.randrange(slots)
        outages.append((check, a, a + rng.randrange(1, 86400 // interval)))
    silent_from = rng.randrange(slots)
    silent_to = silent_from + rng.randrange(0, 43200 // interval)
    per_hour = 3600 // interval
    rows = []
    for i in range(slots):
        if silent_from <= i < silent_to:
            continue
        t = t0 + i * interval + rng.random() * 5
        batch = EVERY_REPORT + HOURLY if i % per_hour == 0 else EVERY_REPORT
        for check, target in batch:
            status = "ok"
            for c, a, b in outages:
                if c == check and a <= i < b:
                    status = "fail"
            rows.append(Observation(t, check, target, status))
    return rows


def baseline(rows) -> dict[str, int]:
    counts = {"ok": 0, "warn": 0, "fail": 0, "error": 0}
    for _at, _check, _target, status, _kind in rows:
        counts[status] += 1
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=500)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--interval", type=int, default=300, help="report interval, seconds")
    ap.add_argument("--variants", type=int, default=8, help="distinct streams cycled over the points")
    args = ap.parse_args()

    profile = load_profiles()["lanzhou-basic-2023"]
    end = START + timedelta(days=args.days)
    t = time.perf_counter()
    streams = [build_stream(seed, args.days, args.interval) for seed in range(args.variants)]
    built = time.perf_counter() - t
    rows_per_point = sum(len(s) for s in streams) / len(streams)

    base_s = engine_s = 0.0
    sheets = []
    for p in range(args.points):
        rows = streams[p % len(streams)]
        t = time.perf_counter()
        baseline(rows)
        base_s += time.perf_counter() - t
        t = time.perf_counter()
        sheets.append((f"6201020{p:05d}", score_period(profile, rows, START, end, args.interval)))
        engine_s += time.perf_counter() - t
    t = time.perf_counter()
    ranked = rank_points(sheets)
    engine_s += time.perf_counter() - t

    total_rows = rows_per_point * args.points
    print(f"county: {args.points} points x {args.days} days, {args.interval}s reports, "
          f"{rows_per_point:,.0f} results per point, {total_rows:,.0f} results in all "
          f"(streams built in {built:.1f}s, not timed)")
    print(f"baseline (one pass counting statuses): {base_s:8.2f} s   {total_rows / base_s / 1e6:6.2f} M results/s")
    print(f"engine (score_period + ranking):       {engine_s:8.2f} s   {total_rows / engine_s / 1e6:6.2f} M results/s")
    print(f"ratio engine/baseline: {engine_s / base_s:.2f}")
    print(f"per point: {engine_s / args.points * 1000:.1f} ms; best {ranked[0].score:g}, worst {ranked[-1].score:g} "
          f"of {profile.automatic_points:g} automatic points")


if __name__ == "__main__":
    main()
