"""The notifier types by name: a webhook, Alertmanager, the group-chat robots and SMTP, and ``build_notifier``.

The base class and its error live in notifybase.py, which the robots and SMTP build on; this module
sits above them all, so it can name every type without an import cycle.
"""

from __future__ import annotations

from collector.alerts.configbase import AlertConfigError, NotifierConfig, duration
from collector.alerts.mail import Smtp
from collector.alerts.notifybase import Notifier, NotifyError
from collector.alerts.robots import DingTalk, Feishu, WeCom

__all__ = ["Alertmanager", "Notifier", "NotifyError", "Webhook", "build_notifier", "notifier_types"]


class Webhook(Notifier):
    """POSTs the payload as JSON (``version: 1``) to any URL: a relay, a ticket system, a script."""

    type = "webhook"

    def send(self, payload: dict) -> None:
        status, _ = self.post_json(self.opts["url"], payload)
        if not 200 <= status < 300:
            raise NotifyError(f"HTTP {status}", reason="http_status")


class Alertmanager(Notifier):
    """Alertmanager v2 API: ``POST {url}/api/v2/alerts``; Alertmanager then routes, groups and silences.

    Alertmanager resolves an alert whose ``endsAt`` passes, so a firing alert gets an ``endsAt`` far ahead
    (``ends_after``, default 7 days) and the resolved message sets it to the resolution time.
    """

    type = "alertmanager"
    optional = ("proxy", "headers", "ends_after")

    def send(self, payload: dict) -> None:
        from datetime import datetime, timedelta, timezone

        from agent.wire import rfc3339

        labels = {"alertname": f"pointwatch_{payload['rule']}", "rule": payload["rule"],
                  "point": payload["point_code"], "region": payload["region"],
                  "severity": payload["severity"], "target": payload["target"] or "", "check": payload["check"]}
        if payload["event"] == "resolved":
            ends = payload["resolved_at"]
        else:
            horizon = duration(self.opts.get("ends_after", "7d"), f"notifiers[{self.name}].ends_after")
            ends = rfc3339(datetime.now(timezone.utc) + timedelta(seconds=horizon))
        alert = {"labels": labels, "annotations": {
            "summary": payload["subject"], "description": payload["text"], "point_name": payload["point_name"]},
            "startsAt": payload["since"], "endsAt": ends, "generatorURL": payload["link"]}
        status, _ = self.post_json(self.opts["url"].rstrip("/") + "/api/v2/alerts", [alert])
        if status != 200:
            raise NotifyError(f"HTTP {status}", reason="http_status")


def notifier_types() -> dict[str, type[Notifier]]:
    return {cls.type: cls for cls in (Webhook, Alertmanager, DingTalk, WeCom, Feishu, Smtp)}


def build_notifier(cfg: NotifierConfig) -> Notifier:
    types = notifier_types()
    if cfg.type not in types:
        raise AlertConfigError(f"alerts.notifiers[{cfg.name}].type: '{cfg.type}' is not one of "
                               f"{', '.join(sorted(types))}")
    return types[cfg.type](cfg)
