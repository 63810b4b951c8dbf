"""The collector's own metrics (pointwatch_collector_*), in a registry of their own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

# `_created` series double every counter and no dashboard reads them.
disable_created_metrics()

REGISTRY = CollectorRegistry(auto_describe=True)

REPORTS_ACCEPTED = Counter("pointwatch_collector_reports_accepted_total",
                           "Reports stored for the first time.", registry=REGISTRY)
REPORTS_DUPLICATE = Counter("pointwatch_collector_reports_duplicate_total",
                            "Re-sent reports recognised by report_id and not stored again.", registry=REGISTRY)
INGEST_REJECTED = Counter("pointwatch_collector_ingest_rejected_total",
                          "Ingest requests refused, by reason.", ["reason"], registry=REGISTRY)
REQUEST_SECONDS = Histogram("pointwatch_collector_request_duration_seconds",
                            "HTTP request latency by route and method.", ["route", "method"],
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=REGISTRY)
DB_SECONDS = Histogram("pointwatch_collector_db_duration_seconds", "Store operation latency by operation.",
                       ["operation"], buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
                       registry=REGISTRY)
