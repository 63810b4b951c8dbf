"""The collector's own metrics (pointwatch_collector_*), in a registry of their own.

Rendered once per collector process, on the unsharded ``/metrics`` scrape. Labelled series the dashboards
read are created up front (zero) so that ``rate()`` sees them before the first event.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

# `_created` series double every counter and no dashboard reads them.
disable_created_metrics()

REGISTRY = CollectorRegistry(auto_describe=True)

# Stable keys of collector.ingest.accept.IngestError; others appear when first counted.
INGEST_REJECT_REASONS = ("not_agent", "wrong_point", "too_large", "too_many", "encoding",
                         "bad_gzip", "bad_json", "too_deep", "bad_shape", "invalid", "busy",
                         "too_late")
# The notifier kinds of DESIGN.md (alerts issue); their send paths count into the series below.
NOTIFIER_KINDS = ("webhook", "alertmanager", "dingtalk", "wecom", "feishu", "smtp")

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

# Notifiers (filled by the alerts code): what waits in the outbox, what was delivered, what failed and why.
NOTIFIER_OUTBOX = Gauge("pointwatch_collector_notifier_outbox",
                        "Notifications waiting in the outbox, by notifier kind.", ["notifier"], registry=REGISTRY)
NOTIFICATIONS_SENT = Counter("pointwatch_collector_notifications_sent_total",
                             "Notifications delivered (acknowledged by the receiver), by notifier kind.",
                             ["notifier"], registry=REGISTRY)
NOTIFIER_FAILURES = Counter("pointwatch_collector_notifier_failures_total",
                            "Failed notification attempts, by notifier kind and reason "
                            "(timeout, connection, http_status, rejected: a robot's errcode != 0).",
                            ["notifier", "reason"], registry=REGISTRY)
NOTIFY_SECONDS = Histogram("pointwatch_collector_notify_duration_seconds",
                           "Time from an alert firing to its notification being acknowledged.", ["notifier"],
                           buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900), registry=REGISTRY)

for _reason in INGEST_REJECT_REASONS:
    INGEST_REJECTED.labels(_reason)
for _kind in NOTIFIER_KINDS:
    NOTIFIER_OUTBOX.labels(_kind)
    NOTIFICATIONS_SENT.labels(_kind)

# -- alerts: evaluation after ingest and on the timer --------------------------------------------------
ALERT_EVALUATIONS = Counter("pointwatch_collector_alert_evaluations_total",
                            "Alert evaluations, by trigger (ingest, timer) and outcome (ok, error; nothing_to_do: "
                            "screened out in bulk, no open alert and no fault).",
                            ["trigger", "outcome"], registry=REGISTRY)
ALERT_EVAL_BACKLOG = Gauge("pointwatch_collector_alert_evaluation_backlog",
                           "Points waiting for alert evaluation after ingest.", registry=REGISTRY)
