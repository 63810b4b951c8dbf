"""Central policy costs, each against a baseline in the same run on one SQLite store:

- a change of a province's document over N points (validated for every point, digests issued in bulk),
  against importing the same N points (the registry's own all-or-nothing write of them);
- an agent's policy fetch (``GET /api/v1/agent/policy``'s work without HTTP), a full signed answer and a 304,
  against the point's plain registry read (``queries.point_summary``);
- ingest of one report stamped with an issued digest (agent.policy derived) against the same report of a
  point without policy, interleaved.

Run: ``.venv/bin/python benchmarks/policy.py [--points 10000]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _median_ms(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from collector.api.agentpolicy import _answer
    from collector.ingest.pipeline import ReportPipeline
    from collector.policy import service
    from collector.registry.spreadsheet import PointRow
    from collector.store import Store, points, queries, registry
    from collector.store.audit import Actor
    from tests.helpers import make_report

    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=10000)
    args = parser.parse_args()
    data = tempfile.mkdtemp()
    store = Store.open(data)
    rows = [PointRow(i, f"P{i:06d}", f"点{i}", f"甘肃省/兰州市/县{i % 10}/镇{i % 50}/村{i % 500}", "national-basic")
            for i in range(args.points)]
    t = time.perf_counter()
    registry.import_points(store, rows, Actor("bench"))
    imported = time.perf_counter() - t
    t = time.perf_counter()
    service.set_region(store, "甘肃省", "core_network: {timeout: 1s, tcp: [{target: '10.0.0.1:443'}]}\n", "p.yaml",
                       Actor("bench"))
    changed = time.perf_counter() - t
    print(f"change over {args.points} points: {changed:.2f} s; importing them: {imported:.2f} s; "
          f"ratio {changed / imported:.2f}")

    code = rows[0].code
    _, _, etag = _answer(store, data, code, None)
    plain = _median_ms(lambda: queries.point_summary(store, code), 200)
    full = _median_ms(lambda: _answer(store, data, code, None), 200)
    not_modified = _median_ms(lambda: _answer(store, data, code, etag), 200)
    print(f"fetch: signed {full:.2f} ms, 304 {not_modified:.2f} ms; point_summary {plain:.2f} ms; "
          f"ratios {full / plain:.1f} / {not_modified / plain:.1f}")

    points.upsert_point(store, "NOPOLICY", "无策略", "甘肃省外/某市/某县")
    digest = service.show_point(store, code).digest
    pipeline = ReportPipeline(store)
    with_policy, without = [], []
    for i in range(400):
        for point, stamp, acc in ((code, digest, with_policy), ("NOPOLICY", None, without)):
            report = make_report(point, seq=i + 1)
            report.policy_digest = stamp
            t = time.perf_counter()
            pipeline.receive([report])
            acc.append(time.perf_counter() - t)
    a, b = statistics.median(without) * 1000, statistics.median(with_policy) * 1000
    print(f"ingest of one report: with policy {b:.2f} ms, without {a:.2f} ms; ratio {b / a:.2f}")
    store.close()


if __name__ == "__main__":
    main()
