"""Time series of one check for charts: bucketed server-side so a 30-day chart stays a few hundred points.

A sample is a report that carried the key (collector/store/samples.py); its value is that of the key's row
in force, so between two rows every report that carried the key counts the earlier row's value (a steady
value is written once a heartbeat, and its chart is still a line, not a dot every five minutes).

Buckets are by the time the agent measured, not ``received_at``: after an outage or a network partition the
agent's backlog arrives late, and must fill the gap where it was measured rather than pile up at its arrival
time. A sample that is its report's own row has the row's ``observed_at``; one read from an earlier row has
its report's ``collected_at`` (what an agent's observed_at defaults to). Reports are read by receive time, from
SKEW before the chart's start to BACKLOG after its end, so a backlog delivered later than that is not drawn
on a chart of the past.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from collector.store.samples import by_report

BACKLOG = timedelta(days=2)
SKEW = timedelta(hours=1)  # an agent clock ahead of the collector's


def _ts(at: datetime | None, tz) -> float | None:
    if at is None:
        return None
    return at.timestamp() if at.tzinfo else at.replace(tzinfo=tz or timezone.utc).timestamp()


def check_series(store, code: str, check: str, since: datetime, until: datetime, buckets: int = 300,
                 min_width: float = 60.0) -> dict:
    """{"t": [bucket start, unix s], "targets": {target: {"value": [...], "loss": [...]}}}; None = no data.

    Buckets are at least ``min_width`` seconds wide (a minute: what agents report at).
    """
    span = (until - since).total_seconds()
    width = max(min_width, span / buckets)
    n = int(span // width) + 1
    t0, t1 = since.timestamp(), until.timestamp()
    sums: dict[str, list[list[float]]] = {}
    for _at, pk, _v, (collected_at,), keys in by_report(
            store, code, since - SKEW, until + BACKLOG, columns=("report_pk", "value", "details", "observed_at"),
            checks=(check,), report_columns=("collected_at",)):
        for _c, target, (row_pk, value, details, observed_at) in keys:
            ts = _ts(observed_at if row_pk == pk else collected_at, since.tzinfo)
            if ts is None or not t0 <= ts < t1:
                continue
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
