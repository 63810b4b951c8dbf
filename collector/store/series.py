"""Time series of one check for charts: bucketed server-side so a 30-day chart stays a few hundred points.

Buckets are by ``observed_at`` (when the agent measured), not ``received_at``: after an outage or a network
partition the agent's backlog arrives late, and must fill the gap where it was measured rather than pile
up at its arrival time (index ix_results_point_check_observed, migration 0003).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from collector.store import models as m


def check_series(store, code: str, check: str, since: datetime, until: datetime, buckets: int = 300,
                 min_width: float = 60.0) -> dict:
    """{"t": [bucket start, unix s], "targets": {target: {"value": [...], "loss": [...]}}}; None = no data.

    Buckets are at least ``min_width`` seconds wide (a minute: what agents report at).
    """
    span = (until - since).total_seconds()
    width = max(min_width, span / buckets)
    n = int(span // width) + 1
    t0 = since.timestamp()
    sums: dict[str, list[list[float]]] = {}
    with store.session() as s:
        rows = s.execute(select(m.Result.observed_at, m.Result.target, m.Result.value, m.Result.details)
                         .where(m.Result.point_code == code, m.Result.check == check,
                                m.Result.observed_at >= since, m.Result.observed_at < until)
                         .execution_options(yield_per=5000))
        for observed_at, target, value, details in rows:
            ts = observed_at.timestamp() if observed_at.tzinfo else observed_at.replace(
                tzinfo=since.tzinfo).timestamp()
            i = min(n - 1, int((ts - t0) // width))
            acc = sums.setdefault(target, [[0.0] * n, [0] * n, [0.0] * n, [0] * n])
            if value is not None:
                acc[0][i] += value
                acc[1][i] += 1
            loss = (details or {}).get("loss_ratio")
            if isinstance(loss, (int, float)):
                acc[2][i] += loss
                acc[3][i] += 1
    return {
        "t": [round(t0 + i * width) for i in range(n)],
        "targets": {target: {"value": [a[0][i] / a[1][i] if a[1][i] else None for i in range(n)],
                             "loss": [a[2][i] / a[3][i] if a[3][i] else None for i in range(n)]}
                    for target, a in sorted(sums.items())},
    }
